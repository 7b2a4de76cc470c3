using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using Poold.Routing;
using Poold.Sessions;
using Standby = Poold.Routing.ReadYourWrites.Standby;

namespace Poold.Tests.Routing;

/// <summary>
/// read_your_writes, the decision alone: the session's LSN, the standbys' replay positions and weights → the node and
/// the reason; and which statements make a session's write durable (the moment Poold asks the primary its position).
/// </summary>
public class ReadYourWritesTests
{
    private const int Primary = 0;
    private static readonly Random Seeded = new(7);

    [Test]
    public void ASessionThatHasNotWritten_KeepsItsBalanceNode_WhateverTheStandbysReplayed()
    {
        Standby[] standbys = [new(1, 1, 0), new(2, 1, 0)];
        Assert.That(ReadYourWrites.Choose(0, 2, Primary, standbys, Seeded), Is.EqualTo((2, (string?)null)));
    }

    [Test]
    public void TheBalanceNodeHasReplayed_ItStays()
    {
        Standby[] standbys = [new(1, 1, 100), new(2, 1, 100)];
        Assert.That(ReadYourWrites.Choose(100, 2, Primary, standbys, Seeded), Is.EqualTo((2, (string?)null)));
    }

    [Test]
    public void TheBalanceNodeIsThePrimary_ItStays()
    {
        Standby[] standbys = [new(1, 1, 0)];
        Assert.That(ReadYourWrites.Choose(100, Primary, Primary, standbys, Seeded), Is.EqualTo((Primary, (string?)null)));
    }

    [Test]
    public void TheBalanceNodeIsBehind_AnotherStandbyThatHasReplayedTakesTheRead()
    {
        Standby[] standbys = [new(1, 1, 0x1_0000_0200), new(2, 1, 0x1_0000_0100)];
        var (node, reason) = ReadYourWrites.Choose(0x1_0000_0180, 2, Primary, standbys, Seeded);
        Assert.That(node, Is.EqualTo(1));
        Assert.That(reason, Is.EqualTo("standby behind session LSN: node 2 has replayed 1/100, the session wrote up to 1/180: node 1 has, by weight"));
        Assert.That(RouteRules.Of(reason!), Is.EqualTo(RouteRules.StandbyBehind));
    }

    [Test]
    public void NoStandbyHasReplayed_ThePrimary()
    {
        Standby[] standbys = [new(1, 1, 50), new(2, 1, 99)];
        var (node, reason) = ReadYourWrites.Choose(100, 1, Primary, standbys, Seeded);
        Assert.That(node, Is.EqualTo(Primary));
        Assert.That(reason, Does.EndWith("no standby has: the primary"));
        Assert.That(RouteRules.Of(reason!), Is.EqualTo(RouteRules.StandbyBehind));
    }

    [Test]
    public void AStandbyThatHasReplayedButWeighsNothing_IsNotDrawn()
    {
        Standby[] standbys = [new(1, 0, 500), new(2, 1, 10)];
        Assert.That(ReadYourWrites.Choose(100, 2, Primary, standbys, Seeded).NodeId, Is.EqualTo(Primary));
    }

    [Test]
    public void AmongStandbysThatHaveReplayed_TheDrawFollowsTheWeights()
    {
        Standby[] standbys = [new(1, 1, 10), new(2, 3, 200), new(3, 1, 200)];
        var random = new Random(1);
        var counts = new int[4];
        for (var i = 0; i < 4000; i++)
        {
            counts[ReadYourWrites.Choose(100, 1, Primary, standbys, random).NodeId]++;
        }

        Assert.That(counts[1], Is.Zero, "node 1 is behind");
        Assert.That(counts[0], Is.Zero, "two standbys have replayed: never the primary");
        Assert.That(counts[2] / (double)counts[3], Is.InRange(2.5, 3.6), "weights 3 : 1");
    }

    [Test]
    public void AnUnknownReplayPosition_CountsAsBehind()
    {
        Standby[] standbys = [new(1, 1, 0)];
        Assert.That(ReadYourWrites.Choose(1, 1, Primary, standbys, Seeded).NodeId, Is.EqualTo(Primary));
    }

    // Seen on PostgreSQL 15: after a commit whose record ended at the page boundary 0/153C000, pg_current_wal_insert_lsn()
    // said 0/153C018 and pg_walinspect (as a standby's replay) put the record's end at 0/153C000; an insert position at a
    // page offset of 40 (0/154E028) was the end of a record that crossed the boundary.
    [TestCase(0x153C018UL, 8192, 0x153C000UL)]
    [TestCase(0x154E028UL, 8192, 0x154E000UL)]
    [TestCase(0x2000028UL, 8192, 0x2000000UL)]
    [TestCase(0x153C020UL, 8192, 0x153C020UL)]
    [TestCase(0x153C000UL, 8192, 0x153C000UL)]
    [TestCase(0x153A018UL, 16384, 0x153A018UL)]
    [TestCase(0x153C018UL, 16384, 0x153C000UL)]
    [TestCase(0x153C018UL, 0, 0x153C018UL)]
    [TestCase(0x153C018UL, 8000, 0x153C018UL)]
    public void EndOfWrites_MovesAPositionRightAfterAPageHeader_BackToTheBoundary(ulong insert, int blockSize, ulong end) =>
        Assert.That(ReadYourWrites.EndOfWrites(insert, blockSize), Is.EqualTo(end), ReadYourWrites.Lsn(insert));

    [Test]
    public void AStandbyStoppedAtThePageBoundary_HasReplayedAWriteWhoseInsertPositionIsPastTheHeader()
    {
        Standby[] standbys = [new(1, 1, 0x153C000)];
        Assert.That(ReadYourWrites.Choose(0x153C018, 1, Primary, standbys, Seeded).NodeId, Is.EqualTo(Primary), "the raw insert position");
        Assert.That(ReadYourWrites.Choose(ReadYourWrites.EndOfWrites(0x153C018, 8192), 1, Primary, standbys, Seeded).NodeId, Is.EqualTo(1));
    }

    [TestCase("0/153C018", "8192", 0x153C000UL)]
    [TestCase("0/153C020", "8192", 0x153C020UL)]
    [TestCase("0/153C018", null, 0UL)]
    [TestCase(null, "8192", 0UL)]
    public async Task TheCapturedPosition_IsTheEndOfTheWrites(string? lsn, string? blockSize, ulong expected)
    {
        var capture = new WalPositionCapture();
        capture.Read(new ReadOnlySequence<byte>(DataRow(lsn, blockSize)));
        capture.Complete();
        Assert.That(await capture.Task, Is.EqualTo(expected));
    }

    /// <summary>A DataRow's body: the field count, then each field as its length (-1 for NULL) and its text.</summary>
    private static byte[] DataRow(params string?[] fields)
    {
        var body = new List<byte> { 0, (byte)fields.Length };
        foreach (var field in fields)
        {
            var bytes = field is null ? [] : Encoding.ASCII.GetBytes(field);
            var length = new byte[4];
            BinaryPrimitives.WriteInt32BigEndian(length, field is null ? -1 : bytes.Length);
            body.AddRange(length);
            body.AddRange(bytes);
        }

        return [.. body];
    }

    [TestCase(0UL, "0/0")]
    [TestCase(0x16B3748UL, "0/16B3748")]
    [TestCase(0x3_0000_00A0UL, "3/A0")]
    public void Lsn_PrintsAsPostgreSQLDoes(ulong lsn, string text) => Assert.That(ReadYourWrites.Lsn(lsn), Is.EqualTo(text));

    [Test]
    public void TheNewRules_AreLabelsOfTheMetric_AndNamedByTheirReasons()
    {
        Assert.That(RouteRules.All, Does.Contain(RouteRules.WaitingForReplay).And.Contain(RouteRules.StandbyBehind));
        Assert.That(RouteRules.Of("waiting for replay: node 2 replayed 0/3000 after 312 ms"), Is.EqualTo(RouteRules.WaitingForReplay));
        Assert.That(RouteRules.Of("standby behind session LSN: the session's WAL position is not known yet: the primary"),
            Is.EqualTo(RouteRules.StandbyBehind));
    }

    private static SessionRouter Router(bool on) =>
        new(new RoutingOptions { ReadYourWrites = on, WriteFunctions = RoutingOptions.Compile(["my_writer"]) }, new FunctionCatalog(), "db");

    private static bool Dispatch(SessionRouter router, string sql)
    {
        router.Dispatched(QueryClassifier.Classify(sql, router.Options));
        return router.TakeDurableWrite();
    }

    [TestCase("INSERT INTO t VALUES (1)", true)]
    [TestCase("UPDATE t SET a = 1", true)]
    [TestCase("CREATE TABLE t2 (a int)", true)]
    [TestCase("SELECT my_writer(1)", true)]
    [TestCase("SELECT * FROM t", false)]
    [TestCase("SELECT other(1)", false)]
    [TestCase("SET application_name = 'x'", false)]
    [TestCase("SET default_transaction_isolation = 'serializable'", false)]
    [TestCase("RESET ALL", false)]
    [TestCase("DISCARD ALL", false)]
    public void AutocommitStatements_ThatChangeData_MakeAWriteDurable(string sql, bool durable) =>
        Assert.That(Dispatch(Router(on: true), sql), Is.EqualTo(durable));

    [Test]
    public void InATransaction_TheWriteIsDurableAtCommit_AndOnlyThen()
    {
        var router = Router(on: true);
        Assert.That(Dispatch(router, "BEGIN"), Is.False);
        Assert.That(Dispatch(router, "INSERT INTO t VALUES (1)"), Is.False, "not durable before COMMIT");
        Assert.That(Dispatch(router, "SAVEPOINT s"), Is.False);
        Assert.That(Dispatch(router, "COMMIT"), Is.True);
        Assert.That(router.TakeDurableWrite(), Is.False, "taken once");

        Assert.That(Dispatch(router, "BEGIN"), Is.False);
        Assert.That(Dispatch(router, "SELECT * FROM t"), Is.False);
        Assert.That(Dispatch(router, "COMMIT"), Is.False, "a transaction that only read wrote nothing");

        Assert.That(Dispatch(router, "BEGIN"), Is.False);
        Assert.That(Dispatch(router, "SELECT my_writer(1)"), Is.False);
        Assert.That(Dispatch(router, "END"), Is.True, "a function that may write counts");
    }

    [Test]
    public void WithTheOptionOff_NothingIsNoted()
    {
        Assert.That(Dispatch(Router(on: false), "INSERT INTO t VALUES (1)"), Is.False);
    }
}
