using Poold.Routing;

namespace Poold.Tests.Routing;

public class SessionPinsTests
{
    private static string? Reason(string sql) => SessionPins.Reason(QueryClassifier.Classify(sql, RoutingOptions.Default), sql);

    [TestCase("PREPARE p(int) AS SELECT $1", "SQL PREPARE")]
    [TestCase("prepare p AS select 1", "SQL PREPARE")]
    [TestCase("LISTEN jobs", "LISTEN")]
    [TestCase("LOAD 'auto_explain'", "LOAD")]
    [TestCase("CREATE TEMP TABLE t (x int)", "temporary table")]
    [TestCase("CREATE TEMPORARY TABLE t AS SELECT 1", "temporary table")]
    [TestCase("SELECT pg_advisory_lock(1)", "pg_advisory_lock()")]
    [TestCase("SELECT pg_catalog.pg_try_advisory_lock_shared(1, 2)", "pg_try_advisory_lock_shared()")]
    [TestCase("DECLARE c CURSOR WITH HOLD FOR SELECT 1", "WITH HOLD")]
    [TestCase("declare c no scroll cursor with hold for select 1", "WITH HOLD")]
    [TestCase("SET ROLE admin", "SET ROLE")]
    [TestCase("SET SESSION AUTHORIZATION admin", "SET SESSION AUTHORIZATION")]
    [TestCase("SELECT 1; PREPARE q AS SELECT 2", "SQL PREPARE")]
    [TestCase("BEGIN; DECLARE c CURSOR WITH HOLD FOR SELECT 1; COMMIT", "WITH HOLD")]
    [TestCase("SELECT * INTO TEMP t FROM pg_class", "temporary table")]
    [TestCase("SELECT 1 AS x INTO LOCAL TEMP t", "temporary table")]
    [TestCase("CREATE TABLE IF NOT EXISTS pg_temp.t (x int)", "temporary table")]
    [TestCase("CREATE FUNCTION pg_temp.f() RETURNS int AS 'SELECT 1' LANGUAGE sql", "temporary table")]
    [TestCase("select relname into temporary table t from pg_class", "temporary table")]
    [TestCase("CREATE OR REPLACE TEMP VIEW v AS SELECT 1", "temporary table")]
    [TestCase("CREATE TABLE pg_temp.t (x int)", "temporary table")]
    [TestCase("UPDATE t SET x = 1 WHERE pg_try_advisory_lock(id)", "advisory lock")]
    [TestCase("SELECT pg_advisory_lock(1) FROM t FOR UPDATE", "advisory lock")]
    [TestCase("WITH d AS (DELETE FROM t RETURNING id) SELECT pg_catalog.pg_advisory_lock(id) FROM d", "advisory lock")]
    public void StatementsWhoseEffectOutlivesTheTransaction_Pin(string sql, string reason) =>
        Assert.That(Reason(sql), Does.Contain(reason));

    [TestCase("SELECT 1")]
    [TestCase("DECLARE c CURSOR FOR SELECT 'WITH HOLD'")]
    [TestCase("DECLARE c CURSOR FOR SELECT * FROM t WITH HOLD")]
    [TestCase("SELECT pg_advisory_xact_lock(1)")]
    [TestCase("SET search_path = a")]
    [TestCase("SET LOCAL ROLE admin")]
    [TestCase("CREATE TABLE temp (x int)")]
    [TestCase("SELECT 'LISTEN x'")]
    [TestCase("INSERT INTO t VALUES (1)")]
    public void StatementsThatFollowTheClient_DoNotPin(string sql) => Assert.That(Reason(sql), Is.Null);

    private static bool MayChangeSettings(string sql) => SessionPins.MayChangeSettings(QueryClassifier.Classify(sql, RoutingOptions.Default), sql);

    [TestCase("SET search_path = a")]
    [TestCase("SET default_transaction_isolation = 'repeatable read'")]
    [TestCase("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE")]
    [TestCase("RESET statement_timeout")]
    [TestCase("DISCARD ALL")]
    [TestCase("SELECT set_config('search_path', 'a', false)")]
    [TestCase("SELECT pg_catalog.set_config('work_mem', '8MB', false)")]
    [TestCase("SELECT 1; SET work_mem = '8MB'")]
    [TestCase("UPDATE t SET note = set_config('search_path', 'a', false)")]
    [TestCase("SELECT 1; SELECT set_config('work_mem', '8MB', false)")]
    public void StatementsThatMayChangeASetting_AreSeen(string sql) => Assert.That(MayChangeSettings(sql), Is.True);

    [TestCase("SELECT 1")]
    [TestCase("SET LOCAL search_path = a")]
    [TestCase("UPDATE t SET x = 1")]
    [TestCase("SELECT current_setting('search_path')")]
    [TestCase("SELECT * FROM t OFFSET 5; UPDATE t SET x = 1")]
    public void OtherStatements_AreNot(string sql) => Assert.That(MayChangeSettings(sql), Is.False);
}
