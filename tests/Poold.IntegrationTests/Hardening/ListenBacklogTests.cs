using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Sockets;
using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.Hardening;

/// <summary>A burst of clients connecting at once: each is served or refused with an error, none left hanging (item 15).</summary>
[NonParallelizable]
public class ListenBacklogTests
{
    private const int Clients = 1500;

    [Test]
    public async Task Burst_1500SimultaneousClients_EachServedOrRefused()
    {
        await using var poold = await PooldInstance.StartAsync(ClusterFixture.Cluster, "num_init_children = 4\nmax_pool = 1\n", ssl: false, onlyNode: 0);
        var outcomes = new ConcurrentDictionary<string, int>();
        var watch = Stopwatch.StartNew();
        var go = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var clients = Enumerable.Range(0, Clients).Select(async _ =>
        {
            await go.Task;
            var outcome = await RunClientAsync(poold.Port);
            outcomes.AddOrUpdate(outcome, 1, (_, n) => n + 1);
        }).ToList();
        go.SetResult();
        await Task.WhenAll(clients);
        var summary = string.Join(", ", outcomes.OrderBy(o => o.Key).Select(o => $"{o.Key}: {o.Value}"));
        await TestContext.Out.WriteLineAsync($"{Clients} clients in {watch.Elapsed.TotalSeconds:0.0}s: {summary}");
        Assert.That(outcomes.Keys, Is.SubsetOf(new[] { "Z", "E:53300" }), summary);
        Assert.That(outcomes.GetValueOrDefault("Z"), Is.GreaterThan(0), summary);
    }

    /// <summary>Connect, StartupMessage (trust), and the outcome within 20 s: "Z" (served), "E:..." (refused) or "hung: ...".</summary>
    private static async Task<string> RunClientAsync(int port)
    {
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        try
        {
            await socket.ConnectAsync("127.0.0.1", port, deadline.Token);
            await socket.SendAsync(RawPackets.Startup(TestRoles.TrustUser, PgCluster.TestDatabase), deadline.Token);
            var outcome = await RawPackets.ReadOutcomeAsync(socket, deadline.Token);
            if (outcome == "Z")
            {
                await socket.SendAsync(RawPackets.Terminate, deadline.Token);
            }

            return outcome;
        }
        catch (OperationCanceledException)
        {
            return "hung: no answer within 20 s";
        }
        catch (SocketException e)
        {
            return "socket error: " + e.SocketErrorCode;
        }
    }
}
