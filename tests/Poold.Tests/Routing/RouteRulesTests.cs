using System.Reflection;
using Poold.Backends;
using Poold.Config;
using Poold.Routing;

namespace Poold.Tests.Routing;

/// <summary>
/// Every reason the router can give has a rule of its own, the label of <c>poold_routing_decisions_total</c> and the
/// <c>rule</c> column of <c>PGPOOL EXPLAIN ROUTE</c>: the classifier's whole case table, the session router's branches and
/// the load balancer's draws.
/// </summary>
public class RouteRulesTests
{
    private static Classification Classify(string sql, RoutingOptions? options = null) => QueryClassifier.Classify(sql, options ?? RoutingOptions.Default);

    [TestCase("INSERT INTO t VALUES (1)", RouteRules.Write)]
    [TestCase("UPDATE t SET a = 1", RouteRules.Write)]
    [TestCase("WITH w AS (DELETE FROM t RETURNING *) SELECT * FROM w", RouteRules.Write)]
    [TestCase("CREATE TABLE t (a int)", RouteRules.Write)]
    [TestCase("COPY t FROM STDIN", RouteRules.Write)]
    [TestCase("LOCK t", RouteRules.Write)]
    [TestCase("PREPARE TRANSACTION 'x'", RouteRules.Write)]
    [TestCase("VALUES (1)", RouteRules.Write)]
    [TestCase("SELECT * FROM t FOR UPDATE", RouteRules.ForUpdate)]
    [TestCase("SELECT * FROM t FOR SHARE", RouteRules.ForUpdate)]
    [TestCase("SELECT * INTO x FROM t", RouteRules.SelectInto)]
    [TestCase("SELECT 1; SELECT 2", RouteRules.MultiStatement)]
    [TestCase("/*NO LOAD BALANCE*/ SELECT 1", RouteRules.NoLoadBalanceComment)]
    [TestCase("/* c */ SELECT 1", RouteRules.CommentOrText)]
    [TestCase("EXPLAIN SELECT 1", RouteRules.Explain)]
    [TestCase("BEGIN ISOLATION LEVEL SERIALIZABLE", RouteRules.Serializable)]
    [TestCase("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", RouteRules.Serializable)]
    [TestCase("SET default_transaction_isolation = 'serializable'", RouteRules.Serializable)]
    [TestCase("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE", RouteRules.Serializable)]
    public void ClassifierReasons_MapToTheirRule(string sql, string rule)
    {
        var c = Classify(sql);
        Assert.That(c.Target, Is.EqualTo(RouteTarget.Primary), c.Reason);
        Assert.That(RouteRules.Of(c.Reason), Is.EqualTo(rule), c.Reason);
    }

    [Test]
    public void PrimaryRoutingPattern_HasItsRule()
    {
        var options = new RoutingOptions { PrimaryRoutingPatterns = RoutingOptions.Compile([".*hot_table.*"]) };
        Assert.That(RouteRules.Of(Classify("SELECT * FROM hot_table", options).Reason), Is.EqualTo(RouteRules.PrimaryPattern));
    }

    /// <summary>The classifier's whole case table: every verdict that needs the primary names a rule that is not a read's.</summary>
    [Test]
    public void ClassifierCaseTable_EveryPrimaryVerdictHasANonBalanceRule()
    {
        var cases = typeof(QueryClassifierTests).GetMethods()
            .SelectMany(m => m.GetCustomAttributes<TestCaseAttribute>())
            .Select(a => a.Arguments.FirstOrDefault())
            .OfType<string>()
            .Distinct()
            .ToList();
        Assert.That(cases, Has.Count.GreaterThan(100), "the case table was found");
        foreach (var sql in cases)
        {
            var c = Classify(sql);
            var rule = RouteRules.Of(c.Reason);
            Assert.That(RouteRules.All, Does.Contain(rule), sql);
            if (c.Target == RouteTarget.Primary)
            {
                Assert.That(RouteRules.IsBalanceRule(rule) || rule is RouteRules.SessionState or RouteRules.Begin, Is.False,
                    $"{sql}: {c.Reason} → {rule}");
            }
        }
    }

    private static SessionRouter Router(RoutingOptions options) => new(options, new FunctionCatalog(), "db");

    private static string Reason(SessionRouter router, string sql)
    {
        var c = Classify(sql, router.Options);
        var (_, why) = router.Decide(c);
        router.Dispatched(c);
        return why;
    }

    [Test]
    public void RouterReasons_MapToTheirRule()
    {
        Assert.That(RouteRules.Of(Reason(Router(new RoutingOptions { LoadBalanceMode = false }), "SELECT 1")), Is.EqualTo(RouteRules.LoadBalanceOff));

        var router = Router(RoutingOptions.Default);
        Reason(router, "BEGIN");
        Reason(router, "INSERT INTO t VALUES (1)");
        Assert.That(RouteRules.Of(Reason(router, "SELECT 1")), Is.EqualTo(RouteRules.TransactionWrote));

        router = Router(new RoutingOptions { OnWrite = LoadBalanceOnWrite.TransTransaction });
        Reason(router, "BEGIN");
        Reason(router, "INSERT INTO t VALUES (1)");
        Reason(router, "COMMIT");
        Reason(router, "BEGIN");
        Assert.That(RouteRules.Of(Reason(router, "SELECT 1")), Is.EqualTo(RouteRules.TransactionWrote));

        router = Router(new RoutingOptions { OnWrite = LoadBalanceOnWrite.DmlAdaptive });
        Reason(router, "BEGIN");
        Reason(router, "INSERT INTO t VALUES (1)");
        Assert.That(RouteRules.Of(Reason(router, "SELECT * FROM t")), Is.EqualTo(RouteRules.DmlAdaptive));

        router = Router(new RoutingOptions { OnWrite = LoadBalanceOnWrite.Always });
        Reason(router, "INSERT INTO t VALUES (1)");
        Assert.That(RouteRules.Of(Reason(router, "SELECT 1")), Is.EqualTo(RouteRules.SessionWrote));

        router = Router(RoutingOptions.Default);
        Reason(router, "BEGIN ISOLATION LEVEL SERIALIZABLE");
        Assert.That(RouteRules.Of(Reason(router, "SELECT 1")), Is.EqualTo(RouteRules.Serializable));

        router = Router(RoutingOptions.Default);
        Reason(router, "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE");
        Assert.That(RouteRules.Of(Reason(router, "SELECT 1")), Is.EqualTo(RouteRules.Serializable));

        router = Router(RoutingOptions.Default);
        Reason(router, "CREATE TEMP TABLE tt (a int)");
        Assert.That(RouteRules.Of(Reason(router, "SELECT * FROM tt")), Is.EqualTo(RouteRules.TempTable));

        router = Router(RoutingOptions.Default);
        Assert.That(RouteRules.Of(Reason(router, "SELECT * FROM pg_class")), Is.EqualTo(RouteRules.SystemCatalog));
        Assert.That(Reason(router, "SELECT nextval('s')"), Does.Contain("nextval"), "the reason names the function");
        Assert.That(RouteRules.Of(Reason(router, "SELECT nextval('s')")), Is.EqualTo(RouteRules.VolatileFunction));

        router = Router(new RoutingOptions { WriteFunctions = RoutingOptions.Compile(["my_.*"]) });
        Assert.That(RouteRules.Of(Reason(router, "SELECT my_writer()")), Is.EqualTo(RouteRules.WriteFunctionList));
        Assert.That(RouteRules.Of(Reason(router, "SELECT txid_current()")), Is.EqualTo(RouteRules.StandbyUnsafeFunction));

        router = Router(new RoutingOptions { ReadOnlyFunctions = RoutingOptions.Compile(["safe_.*"]) });
        Assert.That(RouteRules.Of(Reason(router, "SELECT other_fn()")), Is.EqualTo(RouteRules.ReadOnlyFunctionList));
    }

    [TestCase("the transaction failed on this node", RouteRules.FailedTransaction)]
    [TestCase("the portal lives on this node", RouteRules.Portal)]
    [TestCase("function call", RouteRules.FunctionCall)]
    [TestCase("session state or transaction control", RouteRules.SessionState)]
    [TestCase("BEGIN: opened where the session reads", RouteRules.Begin)]
    [TestCase("BEGIN: the session's last transaction wrote", RouteRules.LastTransactionWrote)]
    [TestCase("BEGIN: load_balance_mode = off", RouteRules.LoadBalanceOff)]
    [TestCase("BEGIN: the session has written (disable_load_balance_on_write = always)", RouteRules.SessionWrote)]
    [TestCase("by weight", RouteRules.WeightDraw)]
    [TestCase("every weight is 0: the primary", RouteRules.WeightDraw)]
    [TestCase("redirect preference app:1 not taken: primary", RouteRules.RedirectList)]
    [TestCase(RouteRules.DelayThresholdReason + ": the primary", RouteRules.DelayThreshold)]
    [TestCase(RouteRules.UnavailableReason + ": the primary", RouteRules.NodeUnavailable)]
    public void SessionReasons_MapToTheirRule(string reason, string rule)
    {
        Assert.That(RouteRules.Of(reason), Is.EqualTo(rule));
        Assert.That(RouteRules.All[RouteRules.IndexOf(reason)], Is.EqualTo(rule), "the metric's index agrees");
    }

    [Test]
    public void BalancerReasons_MapToTheirRule()
    {
        var settings = TestSettings.Parse("""
            backend_hostname0 = 'a'
            backend_port0 = 5432
            backend_weight0 = 0
            backend_hostname1 = 'b'
            backend_port1 = 5433
            backend_weight1 = 1
            app_name_redirect_preference_list = 'reporting:1'
            """);
        var nodes = new NodeRegistry(settings, TimeProvider.System).Current;
        var balancer = new LoadBalancer(settings);
        var (_, byWeight) = balancer.Choose(nodes, "db", "other", new Random(1));
        var (node, redirected) = balancer.Choose(nodes, "db", "reporting", new Random(1));
        Assert.That(RouteRules.Of(byWeight), Is.EqualTo(RouteRules.WeightDraw), byWeight);
        Assert.That((node, RouteRules.Of(redirected)), Is.EqualTo((1, RouteRules.RedirectList)), redirected);
    }

    [Test]
    public void Rules_AreDistinct_AndAnUnknownReasonIsAWrite()
    {
        Assert.That(RouteRules.All, Is.Unique);
        Assert.That(RouteRules.Of("FROBNICATE writes or is not known to be read-only"), Is.EqualTo(RouteRules.Write));
    }
}
