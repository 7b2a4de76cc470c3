using System.Globalization;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using Npgsql;
using Poold.IntegrationTests.Cluster;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.Observability;

/// <summary>
/// The log settings pgpool-II re-reads on reload (log_destination, syslog_facility, syslog_ident, log_line_prefix,
/// log_format, log_connections) take effect in a running Poold without a restart.
/// </summary>
public class LogReloadTests
{
    private static PgCluster Cluster => ClusterFixture.Cluster;

    [Test]
    public async Task Reload_SwitchesToSyslog_WithTheNewFacilityIdentAndPrefix_AndLogsConnections()
    {
        var socketPath = Path.Combine(Path.GetTempPath(), $"poold-syslog-{Guid.NewGuid():N}.sock");
        using var syslog = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        syslog.Bind(new UnixDomainSocketEndPoint(socketPath));
        try
        {
            await using var poold = await PooldInstance.StartAsync(Cluster, "log_line_prefix = 'BEFORE %a: '\n", ssl: false, onlyNode: 0);
            await poold.WaitForLogAsync("BEFORE poold: ");
            var conf = Path.Combine(poold.Directory, "poold.conf");
            var text = (await File.ReadAllTextAsync(conf)).Replace("log_line_prefix = 'BEFORE %a: '", $"""
                log_line_prefix = 'AFTER %a %u: '
                log_destination = 'stderr,syslog'
                syslog_socket = '{socketPath}'
                syslog_facility = 'LOCAL5'
                syslog_ident = 'poold-reloaded'
                log_connections = on
                """, StringComparison.Ordinal);
            await File.WriteAllTextAsync(conf, text);
            poold.Host.Reload();
            await poold.WaitForLogAsync("AFTER poold : INFORMATION: configuration reloaded");
            Assert.That(poold.Log, Does.Not.Contain("takes effect only at restart"));

            var builder = poold.ConnectionString(TestRoles.ScramUser, TestRoles.Password(TestRoles.ScramUser), sslMode: SslMode.Disable);
            builder.ApplicationName = "logreload";
            await using (var connection = new NpgsqlConnection(builder.ConnectionString))
            {
                await connection.OpenAsync();
                Assert.That(await new NpgsqlCommand("SELECT 1", connection).ExecuteScalarAsync(), Is.EqualTo(1));
            }

            // LOCAL5 = 21: 21 * 8 + 6 (info) = 174.
            var pid = Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
            var expected = new Regex($@"^<174>[A-Z][a-z]{{2}} [ 1-3][0-9] \d\d:\d\d:\d\d poold-reloaded\[{pid}\]: AFTER logreload {TestRoles.ScramUser}: "
                                     + @"INFORMATION: session \d+: connection received: host=127\.0\.0\.1 ");
            var received = new List<string>();
            var buffer = new byte[65536];
            await Poll.UntilAsync(async () =>
            {
                using var wait = new CancellationTokenSource(TimeSpan.FromMilliseconds(500));
                try
                {
                    var n = await syslog.ReceiveAsync(buffer, SocketFlags.None, wait.Token);
                    received.Add(Encoding.UTF8.GetString(buffer, 0, n));
                }
                catch (OperationCanceledException)
                {
                    // Nothing yet: poll again.
                }

                return received.Any(expected.IsMatch);
            }, TimeSpan.FromSeconds(10), "the connection logged through the reloaded syslog destination");
            Assert.That(received, Has.None.Contains("BEFORE"), "nothing in the old format reaches the new destination");
            await poold.WaitForLogAsync($"AFTER logreload {TestRoles.ScramUser}: INFORMATION: session");
        }
        finally
        {
            File.Delete(socketPath);
        }
    }

    [Test]
    public async Task Reload_ToJson_WritesOneObjectPerEvent_AndBackToText()
    {
        await using var poold = await PooldInstance.StartAsync(Cluster, "log_line_prefix = 'TEXT: '\n", ssl: false, onlyNode: 0);
        var conf = Path.Combine(poold.Directory, "poold.conf");
        var original = await File.ReadAllTextAsync(conf);
        await File.WriteAllTextAsync(conf, original + "\nlog_format = json\n");
        poold.Host.Reload();
        await poold.WaitForLogAsync("{\"@t\":");
        var json = poold.Log.Split('\n').Single(l => l.Contains("configuration reloaded", StringComparison.Ordinal));
        Assert.That(json, Does.StartWith("{\"@t\":").And.Contain("\"@m\":\"configuration reloaded from"), "JSON after the reload");

        await File.WriteAllTextAsync(conf, original.Replace("'TEXT: '", "'TEXT AGAIN: '", StringComparison.Ordinal));
        poold.Host.Reload();
        await poold.WaitForLogAsync("TEXT AGAIN: INFORMATION: configuration reloaded");
    }
}
