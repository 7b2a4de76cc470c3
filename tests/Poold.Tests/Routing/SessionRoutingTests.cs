using Poold.Backends;
using Poold.Config;
using Poold.Routing;

namespace Poold.Tests.Routing;

/// <summary>The session-dependent rules: function lists, transactions, temporary tables; and the load balancer's draws.</summary>
public class SessionRoutingTests
{
    private static PooldSettings Settings(string text) => TestSettings.Parse(text);

    private static SessionRouter Router(RoutingOptions options) => new(options, new FunctionCatalog(), "db");

    private static NodeChoice Route(SessionRouter router, string sql)
    {
        var c = QueryClassifier.Classify(sql, router.Options);
        var (choice, _) = router.Decide(c);
        router.Dispatched(c);
        return choice;
    }

    [TestCase("SELECT my_writer(1)", "Primary")]
    [TestCase("SELECT public.my_writer(1)", "Balance")]
    [TestCase("SELECT nextval('s')", "Balance")]
    [TestCase("SELECT txid_current()", "Primary")]
    [TestCase("SELECT other(1)", "Balance")]
    public void WriteFunctionList_OnlyListedFunctionsWrite_AsWritten(string sql, string expected)
    {
        var router = Router(new RoutingOptions { WriteFunctions = RoutingOptions.Compile(["my_.*"]) });
        Assert.That(Route(router, sql).ToString(), Is.EqualTo(expected));
    }

    [Test]
    public void CommitAndChain_TheNextTransactionBeginsAtOnce_AsFreshAsAfterBegin_AndSerializableStays()
    {
        var router = Router(RoutingOptions.Default);
        Route(router, "BEGIN");
        Route(router, "UPDATE t SET a = 1");
        Route(router, "COMMIT AND CHAIN");
        Assert.That(router.InTransaction, Is.True, "the chained transaction is open before the server says so");
        Assert.That(Route(router, "SELECT 1"), Is.EqualTo(NodeChoice.Balance), "it has not written yet");
        Route(router, "ROLLBACK");
        Assert.That(router.InTransaction, Is.False);

        Route(router, "BEGIN ISOLATION LEVEL SERIALIZABLE");
        Route(router, "COMMIT AND CHAIN");
        Assert.That(Route(router, "SELECT 1"), Is.EqualTo(NodeChoice.Primary), "a serializable chain stays on the primary");
        Route(router, "COMMIT");

        Route(router, "COMMIT AND CHAIN");
        Assert.That(router.InTransaction, Is.False, "outside a transaction block the server refuses AND CHAIN (25P01)");
    }

    [TestCase("SELECT safe_fn(1)", "Balance")]
    [TestCase("SELECT SAFE_FN(1)", "Balance")]
    [TestCase("SELECT other(1)", "Primary")]
    [TestCase("SELECT 1", "Balance")]
    public void ReadOnlyFunctionList_EveryOtherFunctionWrites(string sql, string expected)
    {
        var router = Router(new RoutingOptions { ReadOnlyFunctions = RoutingOptions.Compile(["safe_fn"]) });
        Assert.That(Route(router, sql).ToString(), Is.EqualTo(expected));
    }

    [Test]
    public void WithoutLists_AFunctionOfAnUnloadedCatalogGoesToThePrimary()
    {
        Assert.That(Route(Router(RoutingOptions.Default), "SELECT f(1)"), Is.EqualTo(NodeChoice.Primary), "volatility unknown: the safe side");
        Assert.That(Route(Router(RoutingOptions.Default), "SELECT 1"), Is.EqualTo(NodeChoice.Balance));
    }

    [Test]
    public void Transaction_ReadsBalanceUntilTheFirstWrite_ThenThePrimaryUntilTheEnd()
    {
        var router = Router(RoutingOptions.Default);
        Assert.That(Route(router, "BEGIN"), Is.EqualTo(NodeChoice.Anywhere));
        Assert.That(Route(router, "SELECT 1"), Is.EqualTo(NodeChoice.Balance));
        Assert.That(Route(router, "UPDATE t SET a = 1"), Is.EqualTo(NodeChoice.Primary));
        Assert.That(Route(router, "SELECT 1"), Is.EqualTo(NodeChoice.Primary));
        Assert.That(Route(router, "COMMIT"), Is.EqualTo(NodeChoice.Anywhere));
        Assert.That(Route(router, "SELECT 1"), Is.EqualTo(NodeChoice.Balance));
    }

    [Test]
    public void LastTransactionWrote_RemembersWhetherTheLastExplicitTransactionWrote()
    {
        var router = Router(RoutingOptions.Default);
        Assert.That(router.LastTransactionWrote, Is.False);
        Route(router, "BEGIN");
        Route(router, "UPDATE t SET a = 1");
        Route(router, "COMMIT");
        Assert.That(router.LastTransactionWrote, Is.True);
        Route(router, "UPDATE t SET a = 2");
        Assert.That(router.LastTransactionWrote, Is.True, "autocommit statements do not change it");
        Route(router, "BEGIN");
        Route(router, "SELECT 1");
        Route(router, "ROLLBACK");
        Assert.That(router.LastTransactionWrote, Is.False);
    }

    [Test]
    public void SetLocalAndSavepoint_MarkTheTransactionWriting_SetTransactionReadOnlyDoesNot()
    {
        var router = Router(RoutingOptions.Default);
        Route(router, "BEGIN");
        Route(router, "SET TRANSACTION READ ONLY");
        Assert.That(Route(router, "SELECT 1"), Is.EqualTo(NodeChoice.Balance));
        Route(router, "SAVEPOINT a");
        Assert.That(Route(router, "SELECT 1"), Is.EqualTo(NodeChoice.Primary));
    }

    [Test]
    public void Serializable_TransactionAndSession()
    {
        var router = Router(RoutingOptions.Default);
        Route(router, "BEGIN ISOLATION LEVEL SERIALIZABLE");
        Assert.That(Route(router, "SELECT 1"), Is.EqualTo(NodeChoice.Primary));
        Route(router, "COMMIT");
        Route(router, "BEGIN");
        Route(router, "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE");
        Assert.That(Route(router, "SELECT 1"), Is.EqualTo(NodeChoice.Primary));
        Route(router, "ROLLBACK");
        Assert.That(Route(router, "SELECT 1"), Is.EqualTo(NodeChoice.Balance));
        Route(router, "SET default_transaction_isolation = 'serializable'");
        Assert.That(Route(router, "SELECT 1"), Is.EqualTo(NodeChoice.Primary));
        Route(router, "SET default_transaction_isolation = 'read committed'");
        Assert.That(Route(router, "SELECT 1"), Is.EqualTo(NodeChoice.Balance));
    }

    [Test]
    public void TemporaryTables_AndSystemCatalogs_AreReadOnThePrimary()
    {
        var router = Router(RoutingOptions.Default);
        Route(router, "CREATE TEMP TABLE Scratch (a int)");
        Assert.That(Route(router, "SELECT * FROM scratch"), Is.EqualTo(NodeChoice.Primary));
        Assert.That(Route(router, "SELECT * FROM other"), Is.EqualTo(NodeChoice.Balance));
        Assert.That(Route(router, "SELECT * FROM pg_class"), Is.EqualTo(NodeChoice.Primary));
        Assert.That(Route(router, "SELECT * FROM information_schema.tables"), Is.EqualTo(NodeChoice.Primary));
        var none = Router(new RoutingOptions { TempTableCheck = CheckTempTable.None });
        Route(none, "CREATE TEMP TABLE scratch (a int)");
        Assert.That(Route(none, "SELECT * FROM scratch"), Is.EqualTo(NodeChoice.Balance), "check_temp_table = none");
    }

    [Test]
    public void DisableLoadBalanceOnWriteOff_NeverSendsReadsToThePrimaryBecauseOfWrites()
    {
        var router = Router(new RoutingOptions { OnWrite = LoadBalanceOnWrite.Off });
        Route(router, "BEGIN");
        Route(router, "UPDATE t SET a = 1");
        Assert.That(Route(router, "SELECT 1"), Is.EqualTo(NodeChoice.Balance));
    }

    private static NodeSnapshot Snapshot(PooldSettings settings) => new NodeRegistry(settings, TimeProvider.System).Current;

    private const string ThreeNodes = """
        backend_hostname0 = 'a'
        backend_port0 = 5432
        backend_weight0 = 0
        backend_hostname1 = 'b'
        backend_port1 = 5432
        backend_weight1 = 1
        backend_hostname2 = 'c'
        backend_port2 = 5432
        backend_weight2 = 3

        """;

    [Test]
    public void Weights_DecideTheShare_AndWeightZeroGetsNothing()
    {
        var settings = Settings(ThreeNodes);
        var balancer = new LoadBalancer(settings);
        var random = new Random(42);
        var counts = new int[3];
        for (var i = 0; i < 4000; i++)
        {
            counts[balancer.Choose(Snapshot(settings), "db", null, random).NodeId]++;
        }

        Assert.That(counts[0], Is.Zero);
        Assert.That(counts[1] / 4000.0, Is.EqualTo(0.25).Within(0.03));
        Assert.That(counts[2] / 4000.0, Is.EqualTo(0.75).Within(0.03));
    }

    [TestCase("database_redirect_preference_list = 'sales:1'", "sales", null, 1)]
    [TestCase("database_redirect_preference_list = 'sal.*:primary'", "sales", null, 0)]
    [TestCase("database_redirect_preference_list = 'sales:primary'", "salesx", null, -1)]
    [TestCase("app_name_redirect_preference_list = 'batch:primary'\ndatabase_redirect_preference_list = 'sales:1'", "sales", "batch", 0)]
    [TestCase("app_name_redirect_preference_list = 'batch:primary'\ndatabase_redirect_preference_list = 'sales:1'", "sales", "web", 1)]
    [TestCase("app_name_redirect_preference_list = 'BATCH:2'", "db", "batch", 2)]
    public void RedirectLists_AreAnchoredAndCaseInsensitive_ApplicationFirst(string lines, string database, string? application, int expected)
    {
        var settings = Settings(ThreeNodes + lines + "\n");
        var balancer = new LoadBalancer(settings);
        var (node, reason) = balancer.Choose(Snapshot(settings), database, application, new Random(1));
        if (expected >= 0)
        {
            Assert.That(node, Is.EqualTo(expected), reason);
        }
        else
        {
            Assert.That(reason, Is.EqualTo("by weight"));
        }
    }

    [Test]
    public void LoadBalanceModeOff_AlwaysThePrimary()
    {
        var settings = Settings(ThreeNodes + "load_balance_mode = off\n");
        Assert.That(new LoadBalancer(settings).Choose(Snapshot(settings), "db", null, new Random(3)).NodeId, Is.Zero);
    }
}
