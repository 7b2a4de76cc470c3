using System.Text;
using Poold.Routing;

namespace Poold.Tests.Routing;

/// <summary>Statement → where pgpool-II's rules (compat §6.2, §6.5) let it run, before session state is applied.</summary>
public class QueryClassifierTests
{
    private const string P = nameof(RouteTarget.Primary);
    private const string B = nameof(RouteTarget.LoadBalance);
    private const string S = nameof(RouteTarget.SessionState);
    private const string T = nameof(RouteTarget.Transaction);

    private static Classification Classify(string sql, RoutingOptions? options = null) => QueryClassifier.Classify(sql, options ?? RoutingOptions.Default);

    // Reads.
    [TestCase("SELECT 1", B)]
    [TestCase("select * from t", B)]
    [TestCase("SeLeCt a, b FROM t WHERE x = 1", B)]
    [TestCase("   SELECT 4", B)]
    [TestCase("\n\tSELECT 4", B)]
    [TestCase("SELECT * FROM t ORDER BY a LIMIT 10 OFFSET 5", B)]
    [TestCase("SELECT count(*) FROM t GROUP BY a HAVING count(*) > 1", B)]
    [TestCase("SELECT a FROM t UNION SELECT b FROM u", B)]
    [TestCase("SELECT a FROM t INTERSECT SELECT b FROM u", B)]
    [TestCase("SELECT a FROM t EXCEPT SELECT b FROM u", B)]
    [TestCase("(SELECT 1)", B)]
    [TestCase("((SELECT 1) UNION (SELECT 2))", B)]
    [TestCase("TABLE t", B)]
    [TestCase("table t", B)]
    [TestCase("WITH x AS (SELECT 1) SELECT * FROM x", B)]
    [TestCase("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r", B)]
    [TestCase("WITH a AS (SELECT 1), b AS (SELECT 2) SELECT * FROM a, b", B)]
    [TestCase("WITH a AS MATERIALIZED (SELECT 1) SELECT * FROM a", B)]
    [TestCase("WITH a AS NOT MATERIALIZED (SELECT 1) SELECT * FROM a", B)]
    [TestCase("SELECT 'FOR UPDATE'", B)]
    [TestCase("SELECT 'a'';FOR UPDATE' FROM t", B)]
    [TestCase("SELECT E'it\\'s FOR UPDATE' FROM t", B)]
    [TestCase("SELECT U&'d\\0061t\\+000061 FOR SHARE'", B)]
    [TestCase("SELECT $$ FOR UPDATE $$", B)]
    [TestCase("SELECT $tag$ INSERT INTO t VALUES (1); $tag$", B)]
    [TestCase("SELECT $a$ $b$ FOR UPDATE $b$ $a$", B)]
    [TestCase("SELECT \"for\" FROM t", B)]
    [TestCase("SELECT \"FOR UPDATE\" FROM t", B)]
    [TestCase("SELECT 1 -- FOR UPDATE", B)]
    [TestCase("SELECT 1 /* FOR UPDATE */", B)]
    [TestCase("SELECT 1 /* nested /* FOR UPDATE */ still comment */", B)]
    [TestCase("SELECT into_col FROM t", B)]
    [TestCase("SELECT a AS \"into\" FROM t", B)]
    [TestCase("SELECT x FROM t WHERE y IN (SELECT z FROM u)", B)]
    [TestCase("SELECT EXISTS (SELECT 1 FROM t)", B)]
    [TestCase("SELECT * FROM t JOIN u USING (id)", B)]
    [TestCase("SELECT * FROM t LEFT JOIN u ON (t.id = u.id)", B)]
    [TestCase("SELECT array[1,2,3]", B)]
    [TestCase("SELECT '{1,2}'::int[]", B)]
    [TestCase("SELECT 1.5e10, .5, 1_000", B)]
    [TestCase("SELECT $1::int", B)]
    [TestCase("SELECT now()", B)]
    [TestCase("SELECT CAST(1 AS text)", B)]
    [TestCase("SELECT x::numeric(10,2) FROM t", B)]
    [TestCase("SELECT row_number() OVER (PARTITION BY a ORDER BY b) FROM t", B)]
    [TestCase("SELECT count(*) FILTER (WHERE a > 1) FROM t", B)]
    [TestCase("SELECT * FROM t WHERE a = ANY (ARRAY[1,2])", B)]
    [TestCase("SELECT B'101', X'ff', N'text'", B)]
    [TestCase("SELECT 1;", B)]
    [TestCase("SELECT 1;  ;", B)]
    [TestCase("SHOW search_path", B)]
    [TestCase("show all", B)]
    [TestCase("SHOW transaction_isolation", B)]
    [TestCase("COPY t TO STDOUT", B)]
    [TestCase("COPY t (a, b) TO STDOUT WITH (FORMAT csv)", B)]
    [TestCase("COPY (SELECT * FROM t) TO STDOUT", B)]
    [TestCase("copy (select 1) to stdout", B)]
    [TestCase("SELECT * FROM t WHERE s = 'x' || 'y'", B)]
    [TestCase("SELECT 1 FROM t WHERE a <> b AND c >= d", B)]
    [TestCase("SELECT a->>'k' FROM j", B)]
    [TestCase("SELECT * FROM \"Mixed Case\"", B)]
    [TestCase("SELECT * FROM sch.tbl", B)]
    [TestCase("SELECT 'multi\nline'", B)]
    [TestCase("SELECT 'ünïcödé' FROM t", B)]
    [TestCase("SELECT * FROM t FOR_UPDATE", B)]
    [TestCase("SELECT * FROM t WHERE \"into\" = 1", B)]
    // Locking clauses and INTO.
    [TestCase("SELECT * FROM t FOR UPDATE", P)]
    [TestCase("SELECT * FROM t FOR SHARE", P)]
    [TestCase("SELECT * FROM t FOR NO KEY UPDATE", P)]
    [TestCase("SELECT * FROM t FOR KEY SHARE", P)]
    [TestCase("select * from t for update nowait", P)]
    [TestCase("SELECT * FROM t FOR UPDATE SKIP LOCKED", P)]
    [TestCase("SELECT * FROM t FOR UPDATE OF t", P)]
    [TestCase("SELECT * FROM (SELECT * FROM t FOR UPDATE) s", P)]
    [TestCase("WITH x AS (SELECT * FROM t FOR UPDATE) SELECT * FROM x", P)]
    [TestCase("(SELECT * FROM t FOR SHARE)", P)]
    [TestCase("SELECT * INTO newtable FROM t", P)]
    [TestCase("SELECT a INTO TEMP tt FROM t", P)]
    [TestCase("select 1 into x", P)]
    // Writable CTEs and WITH … DML.
    [TestCase("WITH x AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM x", P)]
    [TestCase("WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", P)]
    [TestCase("WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x", P)]
    [TestCase("WITH a AS (SELECT 1), b AS (DELETE FROM t RETURNING *) SELECT * FROM a", P)]
    [TestCase("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", P)]
    [TestCase("WITH x AS (SELECT 1) UPDATE t SET a = 1", P)]
    [TestCase("WITH x AS (SELECT 1) DELETE FROM t", P)]
    // DML, DDL, maintenance.
    [TestCase("INSERT INTO t VALUES (1)", P)]
    [TestCase("insert into t select * from u", P)]
    [TestCase("UPDATE t SET a = 1", P)]
    [TestCase("DELETE FROM t", P)]
    [TestCase("MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN DELETE", P)]
    [TestCase("TRUNCATE t", P)]
    [TestCase("CREATE TABLE t (a int)", P)]
    [TestCase("CREATE INDEX ON t (a)", P)]
    [TestCase("CREATE VIEW v AS SELECT 1", P)]
    [TestCase("CREATE TABLE t2 AS SELECT * FROM t", P)]
    [TestCase("CREATE FUNCTION f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql", P)]
    [TestCase("CREATE EXTENSION pgcrypto", P)]
    [TestCase("ALTER TABLE t ADD COLUMN b int", P)]
    [TestCase("DROP TABLE t", P)]
    [TestCase("DROP TABLE IF EXISTS t CASCADE", P)]
    [TestCase("GRANT SELECT ON t TO u", P)]
    [TestCase("REVOKE ALL ON t FROM u", P)]
    [TestCase("COMMENT ON TABLE t IS 'x'", P)]
    [TestCase("VACUUM t", P)]
    [TestCase("VACUUM ANALYZE", P)]
    [TestCase("ANALYZE t", P)]
    [TestCase("CLUSTER t", P)]
    [TestCase("REINDEX TABLE t", P)]
    [TestCase("REFRESH MATERIALIZED VIEW mv", P)]
    [TestCase("CHECKPOINT", P)]
    [TestCase("DO $$ BEGIN PERFORM 1; END $$", P)]
    [TestCase("CALL proc(1)", P)]
    [TestCase("LISTEN chan", P)]
    [TestCase("NOTIFY chan, 'payload'", P)]
    [TestCase("UNLISTEN *", P)]
    [TestCase("DECLARE c CURSOR FOR SELECT 1", P)]
    [TestCase("FETCH 10 FROM c", P)]
    [TestCase("MOVE NEXT IN c", P)]
    [TestCase("CLOSE c", P)]
    [TestCase("SECURITY LABEL ON TABLE t IS 'x'", P)]
    [TestCase("IMPORT FOREIGN SCHEMA s FROM SERVER srv INTO l", P)]
    [TestCase("REASSIGN OWNED BY a TO b", P)]
    [TestCase("ALTER SYSTEM SET work_mem = '8MB'", P)]
    [TestCase("LOAD 'auto_explain'", P)]
    [TestCase("SECURITY", P)]
    [TestCase("FOOBAR baz", P)]
    [TestCase("123", P)]
    [TestCase("'SELECT 1'", P)]
    // EXPLAIN: always the primary, as pgpool-II.
    [TestCase("EXPLAIN SELECT 1", P)]
    [TestCase("EXPLAIN ANALYZE SELECT 1", P)]
    [TestCase("EXPLAIN ANALYZE DELETE FROM t", P)]
    [TestCase("EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET a = 1", P)]
    // COPY.
    [TestCase("COPY t FROM STDIN", P)]
    [TestCase("COPY t (a) FROM STDIN WITH (FORMAT binary)", P)]
    [TestCase("COPY t TO '/tmp/file'", P)]
    [TestCase("COPY t FROM '/tmp/file'", P)]
    [TestCase("COPY (DELETE FROM t RETURNING *) TO STDOUT", P)]
    [TestCase("COPY (INSERT INTO t VALUES (1) RETURNING *) TO STDOUT", P)]
    // LOCK.
    [TestCase("LOCK t", P)]
    [TestCase("LOCK TABLE t IN ACCESS EXCLUSIVE MODE", P)]
    [TestCase("LOCK TABLE t IN ROW EXCLUSIVE MODE", P)]
    [TestCase("LOCK TABLE t IN SHARE MODE", P)]
    [TestCase("LOCK TABLE t IN SHARE ROW EXCLUSIVE MODE", P)]
    [TestCase("LOCK TABLE t IN EXCLUSIVE MODE", P)]
    [TestCase("LOCK TABLE t IN ACCESS SHARE MODE", S)]
    [TestCase("LOCK t IN ROW SHARE MODE", S)]
    // Session state.
    [TestCase("SET search_path TO app, public", S)]
    [TestCase("SET search_path = app", S)]
    [TestCase("set application_name = 'x'", S)]
    [TestCase("SET SESSION work_mem = '8MB'", S)]
    [TestCase("SET LOCAL work_mem = '8MB'", S)]
    [TestCase("SET TIME ZONE 'UTC'", S)]
    [TestCase("SET NAMES 'UTF8'", S)]
    [TestCase("SET SESSION AUTHORIZATION bob", S)]
    [TestCase("SET ROLE admin", S)]
    [TestCase("SET statement_timeout TO 1000", S)]
    [TestCase("SET myapp.tenant = '42'", S)]
    [TestCase("RESET search_path", S)]
    [TestCase("RESET ALL", S)]
    [TestCase("DISCARD ALL", S)]
    [TestCase("DISCARD PLANS", S)]
    [TestCase("DISCARD TEMP", S)]
    [TestCase("SET TRANSACTION READ ONLY", S)]
    [TestCase("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", S)]
    [TestCase("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", S)]
    [TestCase("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", P)]
    [TestCase("SET TRANSACTION READ WRITE", P)]
    [TestCase("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", P)]
    [TestCase("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE", P)]
    [TestCase("SET default_transaction_isolation TO 'serializable'", P)]
    [TestCase("SET transaction_read_only = off", P)]
    [TestCase("SET default_transaction_read_only = off", P)]
    // Transactions.
    [TestCase("BEGIN", T)]
    [TestCase("begin", T)]
    [TestCase("BEGIN TRANSACTION", T)]
    [TestCase("BEGIN WORK", T)]
    [TestCase("BEGIN READ ONLY", T)]
    [TestCase("BEGIN ISOLATION LEVEL REPEATABLE READ", T)]
    [TestCase("START TRANSACTION", T)]
    [TestCase("START TRANSACTION READ ONLY", T)]
    [TestCase("START TRANSACTION ISOLATION LEVEL READ COMMITTED", T)]
    [TestCase("BEGIN ISOLATION LEVEL SERIALIZABLE", P)]
    [TestCase("START TRANSACTION ISOLATION LEVEL SERIALIZABLE READ ONLY", P)]
    [TestCase("COMMIT", T)]
    [TestCase("COMMIT WORK", T)]
    [TestCase("END", T)]
    [TestCase("ROLLBACK", T)]
    [TestCase("ABORT", T)]
    [TestCase("COMMIT AND CHAIN", T)]
    [TestCase("SAVEPOINT a", T)]
    [TestCase("RELEASE SAVEPOINT a", T)]
    [TestCase("RELEASE a", T)]
    [TestCase("ROLLBACK TO SAVEPOINT a", T)]
    [TestCase("ROLLBACK TO a", T)]
    [TestCase("ROLLBACK WORK TO a", T)]
    [TestCase("PREPARE TRANSACTION 'x'", P)]
    [TestCase("COMMIT PREPARED 'x'", P)]
    [TestCase("ROLLBACK PREPARED 'x'", P)]
    // SQL-level prepared statements.
    [TestCase("PREPARE p AS SELECT 1", P)]
    [TestCase("EXECUTE p", P)]
    [TestCase("EXECUTE p(1, 2)", P)]
    [TestCase("DEALLOCATE p", P)]
    [TestCase("DEALLOCATE ALL", P)]
    // Temporary objects.
    [TestCase("CREATE TEMP TABLE tt (a int)", P)]
    [TestCase("CREATE TEMPORARY TABLE tt AS SELECT 1", P)]
    [TestCase("CREATE LOCAL TEMP TABLE tt (a int)", P)]
    // Multiple statements: any write sends all to the primary, and so does any multi-statement string.
    [TestCase("SELECT 1; SELECT 2", P)]
    [TestCase("SELECT 1; UPDATE t SET a = 1", P)]
    [TestCase("BEGIN; SELECT 1; COMMIT", P)]
    [TestCase("SELECT ';'; SELECT 2", P)]
    // pgpool-II's text rule (allow_sql_comments = off): only text starting with s, w, t or ( is balanced.
    [TestCase("/* c */ SELECT 2", P)]
    [TestCase("-- c\nSELECT 3", P)]
    [TestCase("VALUES (1)", P)]
    [TestCase("values (1), (2)", P)]
    [TestCase("/*NO LOAD BALANCE*/ SELECT 1", P)]
    [TestCase("SELECT /*NO LOAD BALANCE*/ 1", P)]
    [TestCase("", B)]
    [TestCase("   ", B)]
    [TestCase(";", B)]
    public void Classify_RoutesAsPgpool(string sql, string expected)
    {
        var verdict = Classify(sql);
        Assert.That(verdict.Target.ToString(), Is.EqualTo(expected), verdict.Reason);
        Assert.That(verdict.Reason, Is.Not.Empty);
    }

    [TestCase("/* c */ SELECT 2", B)]
    [TestCase("-- c\nSELECT 3", B)]
    [TestCase("/* c */ INSERT INTO t VALUES (1)", P)]
    [TestCase("/*NO LOAD BALANCE*/ SELECT 1", P)]
    [TestCase("/* leading */ WITH x AS (SELECT 1) SELECT * FROM x", B)]
    public void AllowSqlComments_IgnoresComments_ButHonoursTheNoLoadBalanceHint(string sql, string expected)
    {
        var options = new RoutingOptions { AllowSqlComments = true };
        Assert.That(Classify(sql, options).Target.ToString(), Is.EqualTo(expected));
    }

    [TestCase("   SELECT 4", true, B)]
    [TestCase("   SELECT 4", false, P)]
    public void IgnoreLeadingWhiteSpace_DecidesWhetherLeadingSpacesCount(string sql, bool ignore, string expected)
    {
        Assert.That(Classify(sql, new RoutingOptions { IgnoreLeadingWhiteSpace = ignore }).Target.ToString(), Is.EqualTo(expected));
    }

    [TestCase("SELECT * FROM t WHERE a = 1", ".*WHERE a = 1.*", P)]
    [TestCase("select * from t where a = 1", ".*WHERE A = 1.*", P)]
    [TestCase("SELECT * FROM t WHERE a = 2", ".*WHERE a = 1.*", B)]
    [TestCase("SELECT * FROM t", "SELECT \\* FROM t", P)]
    [TestCase("SELECT * FROM t2", "SELECT \\* FROM t", B)]
    public void PrimaryRoutingQueryPatternList_IsAnchoredAndCaseInsensitive(string sql, string pattern, string expected)
    {
        var options = new RoutingOptions { PrimaryRoutingPatterns = RoutingOptions.Compile([pattern]) };
        Assert.That(Classify(sql, options).Target.ToString(), Is.EqualTo(expected));
    }

    [TestCase("SELECT nextval('s')", "nextval")]
    [TestCase("SELECT public.f(1), g(x) FROM t", "public.f,g")]
    [TestCase("SELECT \"MyFunc\"(1)", "MyFunc")]
    [TestCase("SELECT count(*) FROM t WHERE a IN (1, 2) AND EXISTS (SELECT 1)", "count")]
    [TestCase("SELECT 'f(1)', $$g(2)$$", "")]
    [TestCase("SELECT CAST(x AS int), COALESCE(a, b) FROM t", "")]
    [TestCase("WITH x AS (SELECT setval('s', 1)) SELECT * FROM x", "setval")]
    [TestCase("COPY (SELECT lastval()) TO STDOUT", "lastval")]
    public void Functions_AreFoundOnlyWhereTheyAreCalled(string sql, string expected)
    {
        Assert.That(string.Join(",", Classify(sql).Functions), Is.EqualTo(expected));
    }

    [TestCase("SELECT * FROM TempTab", "temptab")]
    [TestCase("SELECT * FROM \"TempTab\"", "TempTab")]
    [TestCase("SELECT a.b FROM sch.tbl a", "a,b,sch,tbl,a")]
    public void Names_AreFoldedAsPostgresFoldsThem(string sql, string expected)
    {
        Assert.That(string.Join(",", Classify(sql).Names), Is.EqualTo(expected));
    }

    [TestCase("CREATE TEMP TABLE Foo (a int)", "foo")]
    [TestCase("CREATE TEMPORARY TABLE IF NOT EXISTS \"Bar\" (a int)", "Bar")]
    [TestCase("CREATE TEMP VIEW v AS SELECT 1", "v")]
    public void CreateTemp_NamesTheTemporaryObject(string sql, string expected)
    {
        Assert.That(Classify(sql).CreatedTempTable, Is.EqualTo(expected));
    }

    [TestCase("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'", "f")]
    [TestCase("CREATE OR REPLACE FUNCTION app.\"Mixed\"(a int) RETURNS int AS $$ SELECT a $$ LANGUAGE sql", "Mixed")]
    [TestCase("CREATE PROCEDURE Proc() LANGUAGE sql AS 'SELECT 1'", "proc")]
    [TestCase("ALTER FUNCTION s.Fn(int) VOLATILE", "fn")]
    [TestCase("ALTER ROUTINE r STABLE", "r")]
    [TestCase("ALTER FUNCTION f(int) RENAME TO \"G\"", "f,G")]
    [TestCase("CREATE FUNCTION a() RETURNS int AS 'SELECT 1' LANGUAGE sql; ALTER FUNCTION b() IMMUTABLE", "a,b")]
    [TestCase("CREATE TABLE f (a int)", "")]
    [TestCase("ALTER TABLE f ADD b int", "")]
    [TestCase("SELECT f()", "")]
    public void CreateOrAlterFunction_NamesTheFunction(string sql, string expected)
    {
        Assert.That(string.Join(",", Classify(sql).DefinesFunctions), Is.EqualTo(expected));
    }

    [TestCase("SET search_path = a", "search_path")]
    [TestCase("SET SESSION search_path = a", "search_path")]
    [TestCase("SET TIME ZONE 'UTC'", "timezone")]
    [TestCase("SET NAMES 'UTF8'", "client_encoding")]
    [TestCase("SET myapp.tenant = '1'", "myapp.tenant")]
    [TestCase("RESET search_path", "search_path")]
    [TestCase("SET SESSION AUTHORIZATION bob", "session authorization")]
    public void Set_KeysByParameterForReplay(string sql, string key)
    {
        Assert.That(Classify(sql).SettingKey, Is.EqualTo(key));
    }

    [Test]
    public void SetLocal_IsNotReplayed_AndResetAllStartsOver()
    {
        Assert.That(Classify("SET LOCAL work_mem = '1MB'").SettingKey, Is.Null);
        Assert.That(Classify("RESET ALL").ResetsSession, Is.True);
        Assert.That(Classify("DISCARD ALL").ResetsSession, Is.True);
    }

    [TestCase("DEALLOCATE _p1", "_p1")]
    [TestCase("DEALLOCATE PREPARE \"Stmt\"", "Stmt")]
    [TestCase("DEALLOCATE ALL", "*")]
    [TestCase("DEALLOCATE", null)]
    [TestCase("deallocate prepare", null)]
    [TestCase("DISCARD ALL", "*")]
    [TestCase("DISCARD PLANS", null)]
    public void Deallocate_NamesTheStatementItDrops(string sql, string? name)
    {
        Assert.That(Classify(sql).Deallocates, Is.EqualTo(name));
    }

    [TestCase("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE", true)]
    [TestCase("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED", false)]
    [TestCase("SET default_transaction_isolation = 'serializable'", true)]
    [TestCase("SET default_transaction_isolation TO 'read committed'", false)]
    public void SessionIsolation_IsTracked(string sql, bool serializable)
    {
        Assert.That(Classify(sql).SessionSerializable, Is.EqualTo(serializable));
    }

    [Test]
    public void Lexer_SplitsEveryTokenKind_WithoutAllocating()
    {
        var sql = "SELECT \"q\"\"id\", 'it''s', E'\\'', $1, 1.5e3, $x$ body $x$, a::int /* c */ -- d\n;"u8;
        var lexer = new SqlLexer(sql);
        var kinds = new List<TokenKind>();
        for (var token = lexer.Next(); token.Kind != TokenKind.End; token = lexer.Next())
        {
            kinds.Add(token.Kind);
        }

        Assert.That(kinds, Is.EqualTo(new[]
        {
            TokenKind.Word, TokenKind.QuotedIdentifier, TokenKind.Comma, TokenKind.String, TokenKind.Comma, TokenKind.String, TokenKind.Comma,
            TokenKind.Parameter, TokenKind.Comma, TokenKind.Number, TokenKind.Comma, TokenKind.String, TokenKind.Comma, TokenKind.Word,
            TokenKind.Operator, TokenKind.Word, TokenKind.Semicolon,
        }));

        var before = GC.GetAllocatedBytesForCurrentThread();
        var count = 0;
        for (var i = 0; i < 100; i++)
        {
            var again = new SqlLexer(sql);
            while (again.Next().Kind != TokenKind.End)
            {
                count++;
            }
        }

        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.Zero, $"{count} tokens lexed");
    }

    [Test]
    public void Lexer_UnterminatedLiteralsEndTheText()
    {
        foreach (var sql in new[] { "SELECT 'open", "SELECT \"open", "SELECT $$ open", "SELECT /* open" })
        {
            var lexer = new SqlLexer(Encoding.UTF8.GetBytes(sql));
            var tokens = 0;
            while (lexer.Next().Kind != TokenKind.End)
            {
                tokens++;
            }

            Assert.That(tokens, Is.LessThanOrEqualTo(2), sql);
        }
    }

    /// <summary>Every statement of <see cref="Classify_RoutesAsPgpool"/>, with each literal replaced by another.</summary>
    private static IEnumerable<string> RoutingCases() =>
        typeof(QueryClassifierTests).GetMethod(nameof(Classify_RoutesAsPgpool))!.GetCustomAttributes(typeof(TestCaseAttribute), false)
            .Cast<TestCaseAttribute>().Select(c => (string)c.Arguments[0]!);

    private static byte[] WithOtherLiterals(byte[] sql)
    {
        var result = new List<byte>();
        var lexer = new SqlLexer(sql);
        var copied = 0;
        for (var token = lexer.Next(); token.Kind != TokenKind.End; token = lexer.Next())
        {
            if (token.Kind is TokenKind.String or TokenKind.Number)
            {
                result.AddRange(sql[copied..token.Start]);
                result.AddRange(token.Kind == TokenKind.String ? "'another; value'"u8.ToArray() : "98765"u8.ToArray());
                copied = token.Start + token.Length;
            }
        }

        result.AddRange(sql[copied..]);
        return [.. result];
    }

    private static void AssertSameVerdict(Classification actual, Classification expected, string because)
    {
        Assert.That((actual.Target, actual.Reason, actual.Writes, actual.Transaction, actual.SettingKey, actual.ResetsSession,
                actual.SessionSerializable, actual.CreatedTempTable, actual.MultiStatement, actual.Verb, actual.Deallocates),
            Is.EqualTo((expected.Target, expected.Reason, expected.Writes, expected.Transaction, expected.SettingKey, expected.ResetsSession,
                expected.SessionSerializable, expected.CreatedTempTable, expected.MultiStatement, expected.Verb, expected.Deallocates)), because);
        Assert.That(actual.Functions, Is.EqualTo(expected.Functions), because);
        Assert.That(actual.Names, Is.EqualTo(expected.Names), because);
    }

    [Test]
    public void Cache_StatementsDifferingOnlyInLiterals_GetTheVerdictAFreshClassificationGives()
    {
        byte[][] weird =
        [
            // Raw bytes equal to the shape's literal marker must not make two texts share a shape.
            [.. "SELECT a, "u8, 0xFF, 0x01, .. " FROM t"u8],
            [.. "SELECT a, 'x' FROM t"u8],
            [.. "SELECT a, "u8, 0xFF, 0x02, .. " FROM t"u8],
            [.. "SELECT a, 1 FROM t"u8],
        ];
        var checkedShapes = 0;
        foreach (var sql in RoutingCases().Select(Encoding.UTF8.GetBytes).Concat(weird))
        {
            var original = QueryClassifier.Classify(sql, RoutingOptions.Default);
            AssertSameVerdict(original, QueryClassifier.ClassifyUncached(sql, RoutingOptions.Default), Encoding.UTF8.GetString(sql));
            var variant = WithOtherLiterals(sql);
            if (!variant.AsSpan().SequenceEqual(sql))
            {
                checkedShapes++;
                AssertSameVerdict(QueryClassifier.Classify(variant, RoutingOptions.Default),
                    QueryClassifier.ClassifyUncached(variant, RoutingOptions.Default), Encoding.UTF8.GetString(variant));
            }
        }

        Assert.That(checkedShapes, Is.GreaterThan(50));
    }

    [TestCase("WITH x AS (SELECT 1) 'first'", "WITH x AS (SELECT 1) 'second'")]
    [TestCase("WITH x AS (SELECT 1) 17", "WITH x AS (SELECT 1) 42")]
    public void Cache_WithFollowedByALiteral_KeepsTheLiteralOutOfTheSharedVerdict(string first, string second)
    {
        // Found by fuzzing (corpus/sql/crash-*): the reason quoted the literal, so a statement of the same shape got
        // another statement's text in its verdict.
        _ = Classify(first);
        AssertSameVerdict(Classify(second), QueryClassifier.ClassifyUncached(Encoding.UTF8.GetBytes(second), RoutingOptions.Default), second);
        Assert.That(Classify(second).Reason, Is.EqualTo("WITH … followed by a literal"));
    }

    [Test]
    public void Classify_AStatementSeenBeforeWithOtherValues_AllocatesNothing()
    {
        var statements = Enumerable.Range(1, 101)
            .Select(aid => Encoding.UTF8.GetBytes($"SELECT abalance FROM pgbench_accounts WHERE aid = {aid * 7919} AND filler <> 'x{aid}';"))
            .ToArray();
        var first = QueryClassifier.Classify(statements[0], RoutingOptions.Default);
        Assert.That(first.Target, Is.EqualTo(RouteTarget.LoadBalance));

        var before = GC.GetAllocatedBytesForCurrentThread();
        var reads = 0;
        for (var i = 1; i < statements.Length; i++)
        {
            reads += QueryClassifier.Classify(statements[i], RoutingOptions.Default).Target == RouteTarget.LoadBalance ? 1 : 0;
        }

        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.Zero);
        Assert.That(reads, Is.EqualTo(100));
    }
}
