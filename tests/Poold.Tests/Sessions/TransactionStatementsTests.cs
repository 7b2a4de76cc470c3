using Poold.Routing;
using Poold.Sessions;

namespace Poold.Tests.Sessions;

public class TransactionStatementsTests
{
    private static Classification Classify(string sql) => QueryClassifier.Classify(sql, RoutingOptions.Default);

    [TestCase("SAVEPOINT a", "a")]
    [TestCase("savepoint \"Mixed Case\"", "Mixed Case")]
    [TestCase("RELEASE SAVEPOINT A", "a")]
    [TestCase("RELEASE a", "a")]
    [TestCase("RELEASE savepoint", "savepoint")]
    [TestCase("ROLLBACK TO SAVEPOINT a", "a")]
    [TestCase("ROLLBACK TO a", "a")]
    [TestCase("ROLLBACK WORK TO SAVEPOINT \"x\"\"y\"", "x\"y")]
    [TestCase("ROLLBACK TRANSACTION TO b;", "b")]
    [TestCase("SAVEPOINT 1", null)]
    [TestCase("SAVEPOINT", null)]
    [TestCase("ROLLBACK", null)]
    public void TheClassifier_NamesTheSavepoint_AsTheServerFoldsIt(string sql, string? name) =>
        Assert.That(Classify(sql).SavepointName, Is.EqualTo(name));

    /// <summary>Runs the statements through a stack, in a transaction, and gives what a joining node would get.</summary>
    private static string[] After(params string[] statements)
    {
        var stack = new TransactionStatements();
        foreach (var sql in statements)
        {
            stack.Dispatched(Classify(sql), sql, inTransactionBefore: true, refused: false, certain: true);
        }

        return [.. Enumerable.Range(0, stack.Count).Select(stack.StatementAt)];
    }

    [Test]
    public void Savepoints_AreReplayedOldestFirst_AsTheClientWroteThem() =>
        Assert.That(After("SAVEPOINT a", "SELECT 1", "savepoint \"B\""), Is.EqualTo(new[] { "SAVEPOINT a", "savepoint \"B\"" }));

    [Test]
    public void Release_DropsTheSavepointAndEveryLaterOne() =>
        Assert.That(After("SAVEPOINT a", "SAVEPOINT b", "SAVEPOINT c", "RELEASE SAVEPOINT B"), Is.EqualTo(new[] { "SAVEPOINT a" }));

    [Test]
    public void RollbackTo_KeepsTheSavepoint_AndDropsTheLaterOnes() =>
        Assert.That(After("SAVEPOINT a", "SAVEPOINT b", "SAVEPOINT c", "ROLLBACK TO b"), Is.EqualTo(new[] { "SAVEPOINT a", "SAVEPOINT b" }));

    [Test]
    public void ANameSetTwice_StandsTwice_AndTheNewestIsTheOneReleased() =>
        Assert.That(After("SAVEPOINT a", "SAVEPOINT b", "SAVEPOINT a", "RELEASE a"), Is.EqualTo(new[] { "SAVEPOINT a", "SAVEPOINT b" }));

    [Test]
    public void AnUnknownName_ChangesNothing() =>
        Assert.That(After("SAVEPOINT a", "RELEASE z", "ROLLBACK TO y"), Is.EqualTo(new[] { "SAVEPOINT a" }));

    [TestCase("COMMIT")]
    [TestCase("ROLLBACK")]
    [TestCase("COMMIT AND CHAIN")]
    [TestCase("END")]
    public void TheEndOfTheTransaction_DropsThemAll(string end) => Assert.That(After("SAVEPOINT a", "SAVEPOINT b", end), Is.Empty);

    [Test]
    public void AReleaseOrRollbackToThatMayBeSkipped_DropsNothing()
    {
        // Behind a statement whose answer is still due (its error would make the server skip them): a joining node may
        // then hold a savepoint too many, never lack one.
        var stack = new TransactionStatements();
        foreach (var sql in new[] { "SAVEPOINT a", "SAVEPOINT b" })
        {
            stack.Dispatched(Classify(sql), sql, inTransactionBefore: true, refused: false, certain: false);
        }

        stack.Dispatched(Classify("ROLLBACK TO a"), "ROLLBACK TO a", inTransactionBefore: true, refused: false, certain: false);
        stack.Dispatched(Classify("RELEASE a"), "RELEASE a", inTransactionBefore: true, refused: false, certain: false);
        Assert.That(stack.Count, Is.EqualTo(2));
    }

    [TestCase("COMMIT AND CHAIN", true)]
    [TestCase("commit work and chain;", true)]
    [TestCase("ROLLBACK TRANSACTION AND CHAIN", true)]
    [TestCase("COMMIT AND NO CHAIN", false)]
    [TestCase("COMMIT", false)]
    [TestCase("COMMIT /* and chain */", false)]
    public void TheClassifier_TellsAndChain_FromTheTokens(string sql, bool chain)
    {
        Assert.That(Classify(sql).Transaction, Is.EqualTo(TransactionEffect.End));
        Assert.That(Classify(sql).AndChain, Is.EqualTo(chain));
    }

    [Test]
    public void AStatementOutsideATransaction_FindsNone()
    {
        var stack = new TransactionStatements();
        stack.Dispatched(Classify("SAVEPOINT a"), "SAVEPOINT a", inTransactionBefore: true, refused: false, certain: true);
        stack.Dispatched(Classify("SELECT 1"), "", inTransactionBefore: false, refused: false, certain: true);
        Assert.That(stack.Count, Is.Zero);
    }

    [Test]
    public void InAFailedTransaction_SavepointAndReleaseAreRefused_RollbackToRecovers()
    {
        var stack = new TransactionStatements();
        stack.Dispatched(Classify("SAVEPOINT a"), "SAVEPOINT a", inTransactionBefore: true, refused: false, certain: true);
        stack.Dispatched(Classify("SAVEPOINT b"), "SAVEPOINT b", inTransactionBefore: true, refused: false, certain: true);
        stack.Dispatched(Classify("SAVEPOINT c"), "SAVEPOINT c", inTransactionBefore: true, refused: true, certain: true);
        stack.Dispatched(Classify("RELEASE a"), "RELEASE a", inTransactionBefore: true, refused: true, certain: true);
        Assert.That(stack.Count, Is.EqualTo(2), "neither the SAVEPOINT nor the RELEASE took effect");
        stack.Dispatched(Classify("ROLLBACK TO a"), "ROLLBACK TO a", inTransactionBefore: true, refused: false, certain: true);
        Assert.That(stack.Count, Is.EqualTo(1));
        Assert.That(stack.StatementAt(0), Is.EqualTo("SAVEPOINT a"));
    }

    /// <summary>Runs savepoint statements and settings through the log, in a transaction, and gives what a joining node would get.</summary>
    private static (string[] Replayed, TransactionStatements Log) WithSettings(params string[] statements)
    {
        var log = new TransactionStatements();
        foreach (var sql in statements)
        {
            var c = Classify(sql);
            if (c.Target == RouteTarget.SessionState)
            {
                log.AddSetting(sql, c.SetsTransaction ? null : c, c.Characteristics);
            }
            else
            {
                log.Dispatched(c, sql, inTransactionBefore: true, refused: false, certain: true);
            }
        }

        return ([.. Enumerable.Range(0, log.Count).Select(log.StatementAt)], log);
    }

    [Test]
    public void Settings_AreReplayedAmongTheSavepoints_InTheirOrder() =>
        Assert.That(WithSettings("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", "SAVEPOINT a", "SET LOCAL work_mem = '5MB'").Replayed,
            Is.EqualTo(new[] { "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", "SAVEPOINT a", "SET LOCAL work_mem = '5MB'" }));

    [Test]
    public void RollbackTo_UndoesTheSettingsMadeAfterTheSavepoint() =>
        Assert.That(WithSettings("SET LOCAL a.x = 1", "SAVEPOINT s", "SET LOCAL a.y = 2", "SET a.z = 3", "ROLLBACK TO s").Replayed,
            Is.EqualTo(new[] { "SET LOCAL a.x = 1", "SAVEPOINT s" }));

    [Test]
    public void Release_KeepsTheSettingsMadeUnderTheSavepoint() =>
        Assert.That(WithSettings("SAVEPOINT s", "SET LOCAL a.y = 2", "SAVEPOINT t", "SET a.z = 3", "RELEASE s").Replayed,
            Is.EqualTo(new[] { "SET LOCAL a.y = 2", "SET a.z = 3" }));

    [Test]
    public void ANodeInTheTransaction_GetsOnlyTheSettingsItHasNotRun()
    {
        var (_, log) = WithSettings("SET LOCAL a.x = 1", "SAVEPOINT s");
        var seen = log.LastSetting;
        log.AddSetting("SET LOCAL a.y = 2", null);
        log.Dispatched(Classify("SAVEPOINT t"), "SAVEPOINT t", inTransactionBefore: true, refused: false, certain: true);
        log.AddSetting("SET a.z = 3", Classify("SET a.z = 3"));
        Assert.That(log.SettingsAfter(seen), Is.EqualTo(new[] { "SET LOCAL a.y = 2", "SET a.z = 3" }));
        Assert.That(log.SettingsAfter(log.LastSetting), Is.Empty);
    }

    [Test]
    public void ACommit_TakesTheSessionLevelSettings_NotTheLocalOnes()
    {
        var (_, log) = WithSettings("SET LOCAL a.x = 1", "SET search_path = s1", "SAVEPOINT s", "RESET work_mem", "SET CONSTRAINTS ALL DEFERRED");
        Assert.That(log.TakeCommitted().Select(c => c.Sql), Is.EqualTo(new[] { "SET search_path = s1", "RESET work_mem" }));
        log.Dispatched(Classify("COMMIT"), "COMMIT", inTransactionBefore: true, refused: false, certain: true);
        Assert.That(log.Count, Is.Zero);
        Assert.That(log.TakeCommitted(), Is.Empty);
    }

    [TestCase("COMMIT AND CHAIN")]
    [TestCase("ROLLBACK AND CHAIN")]
    public void AndChain_KeepsTheTransactionsCharacteristics_AndNothingElse(string chain)
    {
        var (_, log) = WithSettings("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", "SET LOCAL a.x = 1", "SAVEPOINT s", "SET a.y = 2");
        log.Dispatched(Classify(chain), chain, inTransactionBefore: true, refused: false, certain: true);
        Assert.That(Enumerable.Range(0, log.Count).Select(log.StatementAt), Is.EqualTo(new[] { "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ" }));
        Assert.That(log.TakeCommitted(), Is.Empty);
    }

    [TestCase("SET TRANSACTION SNAPSHOT '00000003-0000001B-1'", false)]
    [TestCase("SET TRANSACTION READ ONLY", true)]
    [TestCase("PREPARE TRANSACTION 'g1'", false)]
    public void TheClassifier_TellsTheCharacteristicsAChainKeeps(string sql, bool characteristics)
    {
        Assert.That(Classify(sql).Characteristics, Is.EqualTo(characteristics));
        Assert.That(Classify(sql).SetsTransaction, Is.EqualTo(characteristics), "a snapshot is not replayed where it does not exist");
        Assert.That(Classify(sql).PreparesTransaction, Is.EqualTo(sql.StartsWith("PREPARE", StringComparison.Ordinal)));
    }

    [TestCase("COMMIT", true)]
    [TestCase("END WORK", true)]
    [TestCase("commit and chain", true)]
    [TestCase("ROLLBACK", false)]
    [TestCase("ABORT", false)]
    public void TheClassifier_TellsACommitFromARollback(string sql, bool commits) => Assert.That(Classify(sql).Commits, Is.EqualTo(commits));

    [TestCase("SET LOCAL statement_timeout = 5", true)]
    [TestCase("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", true)]
    [TestCase("SET CONSTRAINTS ALL DEFERRED", true)]
    [TestCase("SET statement_timeout = 5", false)]
    [TestCase("SET SESSION statement_timeout = 5", false)]
    public void TheClassifier_TellsATransactionSetting(string sql, bool local)
    {
        Assert.That(Classify(sql).SetsTransaction, Is.EqualTo(local));
        Assert.That(Classify(sql).SettingKey is null, Is.EqualTo(local), "a transaction's setting is no part of the session's history");
    }

    [TestCase("RESET TimeZone", true, "timezone")]
    [TestCase("SET application_name TO DEFAULT", true, "application_name")]
    [TestCase("set session application_name = default", true, "application_name")]
    [TestCase("SET application_name TO 'default'", false, "application_name")]
    [TestCase("SET LOCAL application_name TO DEFAULT", false, null)]
    [TestCase("SET search_path TO \"default\"", false, "search_path")]
    public void TheClassifier_TellsAResetToTheStartValue(string sql, bool toDefault, string? key)
    {
        Assert.That(Classify(sql).ToDefault, Is.EqualTo(toDefault));
        Assert.That(Classify(sql).SettingKey, Is.EqualTo(key));
    }
}
