using Poold.Pooling;

namespace Poold.Tests.Pooling;

/// <summary>
/// The order in which a transaction-mode pool's line is served (<see cref="ConnectionPool.TakeNext"/>): first come,
/// first served, except that under load a client on the returned connection's event thread may go a little ahead.
/// </summary>
public class PoolLineTests
{
    private static readonly PoolKey Key = new(0, "app", "appdb", "");
    private ConnectionPool _pool = null!;

    [SetUp]
    public void SetUp() => _pool = new ConnectionPool(new PoolLimits(Cache: true, MaxPerNode: 10, MaxIdlePerKey: 10, LifeTime: TimeSpan.Zero), TimeProvider.System);

    [TearDown]
    public async Task TearDown() => await _pool.DisposeAsync();

    /// <summary>A line of waiters on the given event threads, in that order; each waiter's number is its place.</summary>
    private (LinkedList<ConnectionPool.PoolWaiter> Line, Dictionary<ConnectionPool.PoolWaiter, int> Place) Line(IEnumerable<int> loops)
    {
        var line = new LinkedList<ConnectionPool.PoolWaiter>();
        var place = new Dictionary<ConnectionPool.PoolWaiter, int>();
        foreach (var loop in loops)
        {
            var waiter = new ConnectionPool.PoolWaiter();
            waiter.Enter(_pool, Key, TimeSpan.FromSeconds(5), long.MaxValue, loop);
            place[waiter] = place.Count;
            line.AddLast(waiter.Node);
        }

        return (line, place);
    }

    [Test]
    public void AShortLine_IsServedInOrder_WhateverThreadTheConnectionIsOn()
    {
        var count = ConnectionPool.AffinityMinimumLine - 1;
        var (line, place) = Line(Enumerable.Range(0, count).Select(i => i % 2 == 0 ? 10 : 11));
        var served = new List<int>();
        while (ConnectionPool.TakeNext(line, eventLoop: 11) is { } waiter)
        {
            served.Add(place[waiter]);
        }

        Assert.That(served, Is.EqualTo(Enumerable.Range(0, count)), "fewer than AffinityMinimumLine wait: strictly first come, first served");
    }

    [Test]
    public void ALineOfExactlyTheMinimum_MayBeServedOutOfOrder()
    {
        var loops = Enumerable.Repeat(10, 1).Append(11).Concat(Enumerable.Repeat(10, ConnectionPool.AffinityMinimumLine - 2));
        var (line, place) = Line(loops);
        Assert.That(line, Has.Count.EqualTo(ConnectionPool.AffinityMinimumLine));

        Assert.That(place[ConnectionPool.TakeNext(line, eventLoop: 11)!], Is.EqualTo(1));
    }

    [Test]
    public void ALongLine_GivesTheConnectionToTheFirstClientOnItsThread_WithinTheScan()
    {
        var loops = Enumerable.Repeat(10, 5).Append(11).Concat(Enumerable.Repeat(10, ConnectionPool.AffinityMinimumLine));
        var (line, place) = Line(loops);

        var taken = ConnectionPool.TakeNext(line, eventLoop: 11)!;

        Assert.That(place[taken], Is.EqualTo(5), "the first waiter on thread 11 went ahead");
        Assert.That(line.Take(5).Select(w => w.PassedOver), Is.All.EqualTo(1), "the five before it were passed over once");
        Assert.That(line.Skip(5).Select(w => w.PassedOver), Is.All.Zero, "those behind it were not");
        Assert.That(place[ConnectionPool.TakeNext(line, eventLoop: 10)!], Is.Zero, "a connection on the head's thread goes to the head");
        Assert.That(place[ConnectionPool.TakeNext(line, ConnectionPool.AnyEventLoop)!], Is.EqualTo(1), "one on no known thread, to the head too");
    }

    [Test]
    public void AClientOnTheThread_PastTheScan_DoesNotGoAhead()
    {
        var loops = Enumerable.Repeat(10, ConnectionPool.AffinityScan).Append(11).Concat(Enumerable.Repeat(10, ConnectionPool.AffinityMinimumLine));
        var (line, place) = Line(loops);

        Assert.That(place[ConnectionPool.TakeNext(line, eventLoop: 11)!], Is.Zero);
        Assert.That(line.Select(w => w.PassedOver), Is.All.Zero, "nobody was passed over");
    }

    [Test]
    public void AClientOnAnUnknownThread_IsNeverPassedOver()
    {
        var loops = Enumerable.Repeat(10, 2).Prepend(ConnectionPool.AnyEventLoop).Append(11)
            .Concat(Enumerable.Repeat(10, ConnectionPool.AffinityMinimumLine));
        var (line, place) = Line(loops);

        Assert.That(place[ConnectionPool.TakeNext(line, eventLoop: 11)!], Is.Zero, "the head's thread is unknown: it is served");
        Assert.That(place[ConnectionPool.TakeNext(line, eventLoop: 11)!], Is.EqualTo(3), "then the first on thread 11");
    }

    [Test]
    public void AWaiterThatWaitsAgain_StartsWithNoPassOvers()
    {
        var loops = Enumerable.Repeat(10, 1).Concat(Enumerable.Repeat(11, 2 * ConnectionPool.AffinityMinimumLine));
        var (line, _) = Line(loops);
        var head = line.First!.Value;
        for (var i = 0; i < ConnectionPool.MaxPassedOver; i++)
        {
            ConnectionPool.TakeNext(line, eventLoop: 11);
        }

        Assert.That(head.PassedOver, Is.EqualTo(ConnectionPool.MaxPassedOver));
        Assert.That(ConnectionPool.TakeNext(line, eventLoop: 11), Is.SameAs(head));

        // The pool reuses a waiter for its session's next wait: it joins the end of a line with a clean slate.
        head.Enter(_pool, Key, TimeSpan.FromSeconds(5), long.MaxValue, 10);
        line.AddLast(head.Node);
        Assert.That(head.PassedOver, Is.Zero);
    }

    [Test]
    public void NoClient_IsPassedOverMoreThanMaxPassedOverTimes()
    {
        // The head is on thread 10, everyone behind it on 11, and every connection returned is on 11.
        var loops = Enumerable.Repeat(10, 1).Concat(Enumerable.Repeat(11, 2 * ConnectionPool.AffinityMinimumLine));
        var (line, place) = Line(loops);
        var served = new List<int>();
        for (var i = 0; i <= ConnectionPool.MaxPassedOver; i++)
        {
            served.Add(place[ConnectionPool.TakeNext(line, eventLoop: 11)!]);
        }

        Assert.That(served, Is.EqualTo(Enumerable.Range(1, ConnectionPool.MaxPassedOver).Append(0)),
            "passed over MaxPassedOver times, the head is served next, on another thread's connection");
    }

    [Test]
    public void UnderAnyMixOfThreads_EveryClientIsServed_NoneIsPassedOverTooOften_NorServedFarFromItsPlace()
    {
        var random = new Random(20261207);
        for (var run = 0; run < 200; run++)
        {
            var (line, place) = Line(Enumerable.Range(0, 100).Select(_ => random.Next(3)));
            var served = new List<int>();
            while (line.Count > 0)
            {
                var before = line.ToList();
                var loop = random.Next(3);
                var expected = Expected(before, loop);
                var waiter = ConnectionPool.TakeNext(line, loop)!;
                Assert.That(before.IndexOf(waiter), Is.EqualTo(expected), $"run {run}: the waiter the rules choose");
                Assert.That(before.Max(w => w.PassedOver), Is.LessThanOrEqualTo(ConnectionPool.MaxPassedOver));
                served.Add(place[waiter]);
            }

            Assert.That(served, Is.EquivalentTo(Enumerable.Range(0, 100)), "every client served exactly once");
            Assert.That(served, Is.Not.Ordered, $"run {run}: a long line on three threads is not served strictly in order");
            for (var i = 0; i < served.Count; i++)
            {
                // A client is served no later than MaxPassedOver turns after all before it were.
                Assert.That(i - served[i], Is.LessThanOrEqualTo(ConnectionPool.MaxPassedOver), $"run {run}: client {served[i]} served at turn {i}");
            }
        }
    }

    /// <summary>
    /// The rules, stated by position: the head, unless the line is long, the head is on another thread, and some waiter on
    /// the connection's thread stands within the scan with nobody before it passed over the maximum.
    /// </summary>
    private static int Expected(List<ConnectionPool.PoolWaiter> line, int loop)
    {
        if (line.Count < ConnectionPool.AffinityMinimumLine)
        {
            return 0;
        }

        for (var i = 0; i < Math.Min(ConnectionPool.AffinityScan, line.Count); i++)
        {
            if (line[i].EventLoop == loop)
            {
                return i;
            }

            if (line[i].PassedOver >= ConnectionPool.MaxPassedOver)
            {
                return 0;
            }
        }

        return 0;
    }
}
