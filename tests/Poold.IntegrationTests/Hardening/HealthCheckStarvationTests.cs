using System.Diagnostics;
using System.Net.Sockets;
using Npgsql;
using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.Hardening;

/// <summary>
/// Client traffic never causes a failover (hardening issue, item 14): clients pipelining statements without reading
/// the replies keep Poold's socket threads busy, while health checks run every second with a one-second timeout.
/// Runs the daemon, whose socket continuations run inline on the event threads (the mode the defect needs).
/// </summary>
public class HealthCheckStarvationTests
{
    private static PgCluster Cluster => ClusterFixture.Cluster;

    private static readonly TimeSpan FloodTime = TimeSpan.FromSeconds(8);

    [Test]
    public async Task ClientsPipeliningWithoutReading_DoNotGetAHealthyNodeDetached()
    {
        await using var poold = await PooldProcess.StartAsync(PooldInstance.BackendLines(Cluster)
            + "health_check_period = 1\nhealth_check_timeout = 1\nhealth_check_max_retries = 0\nhealth_check_user = '" + TestRoles.TrustUser
            + "'\nsr_check_period = 1\nsr_check_user = '" + TestRoles.TrustUser + "'\nload_balance_mode = on\nlog_min_messages = info\n");
        var floods = Enumerable.Range(0, 4).Select(i => FloodAsync(poold.Port, $"flood{i}")).ToList();

        // Meanwhile a normal client logs in and runs statements, on every node the balancer picks.
        var builder = new NpgsqlConnectionStringBuilder
        {
            Host = "127.0.0.1",
            Port = poold.Port,
            Username = TestRoles.TrustUser,
            Database = PgCluster.TestDatabase,
            SslMode = SslMode.Disable,
            Pooling = false,
            Timeout = 15,
            CommandTimeout = 15,
        };
        var watch = Stopwatch.StartNew();
        var logins = 0;
        while (watch.Elapsed < FloodTime)
        {
            await using var connection = new NpgsqlConnection(builder.ConnectionString);
            await connection.OpenAsync();
            Assert.That(await new NpgsqlCommand("SELECT 1", connection).ExecuteScalarAsync(), Is.EqualTo(1));
            logins++;
        }

        var sent = await Task.WhenAll(floods);
        Assert.That(sent.Sum(), Is.GreaterThan(10_000), "the flooding clients got their statements in");
        Assert.That(logins, Is.GreaterThan(0));

        await using (var admin = new NpgsqlConnection(builder.ConnectionString))
        {
            await admin.OpenAsync();
            await using var reader = await new NpgsqlCommand("SHOW POOL_NODES", admin).ExecuteReaderAsync();
            var statuses = new List<string>();
            while (await reader.ReadAsync())
            {
                statuses.Add(reader.GetString(reader.GetOrdinal("status")));
            }

            Assert.That(statuses, Is.EqualTo(new[] { "up", "up", "up" }), poold.Output);
        }

        Assert.That(poold.Output, Does.Not.Contain("health check failed"));
        Assert.That(poold.Output, Does.Not.Contain("failover"));
    }

    /// <summary>
    /// Logs in, then sends <c>select 1</c> messages in 64 kB writes without ever reading, until the flood time is over or
    /// the socket stops taking more (the replies fill every buffer on the way). Returns how many it sent.
    /// </summary>
    private static async Task<int> FloodAsync(int port, string name)
    {
        await using var client = await RawClient.ConnectAsync(port, TestRoles.TrustUser, PgCluster.TestDatabase, name);
        var query = RawClient.Query("select 1");
        var chunk = new byte[query.Length * (65536 / query.Length)];
        for (var offset = 0; offset < chunk.Length; offset += query.Length)
        {
            query.CopyTo(chunk, offset);
        }

        using var deadline = new CancellationTokenSource(FloodTime);
        var sent = 0;
        try
        {
            while (!deadline.IsCancellationRequested)
            {
                await client.Socket.SendAsync(chunk, SocketFlags.None, deadline.Token);
                sent += chunk.Length / query.Length;
            }
        }
        catch (OperationCanceledException)
        {
            // The flood time is over, possibly while the send waited for room.
        }

        client.Abort();
        return sent;
    }
}
