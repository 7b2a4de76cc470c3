using System.Globalization;
using System.Text;
using Poold.Pcp;

namespace Poold.PcpTools;

/// <summary>What one pcp_* invocation asked for.</summary>
internal sealed record PcpRequest(
    PcpTool Tool, string? Host, int Port, string User, bool NoPassword, bool ForcePassword, bool Verbose, bool Debug, int? NodeId, bool All,
    bool Gracefully, bool Switchover, string? Mode, string? Scope, int? ProcessId);

/// <summary>
/// The pcp_* tools' requests and their output, byte for byte as pgpool-II 4.3's tools print them (compat §4.5), so
/// scripts that parse them keep working. Node info is read in both record layouts (12 fields: 4.3, 13: 4.4+).
/// </summary>
internal static class PcpCommands
{
    private const double RandMax = 2147483647;

    public static async Task<int> RunAsync(PcpRequest r)
    {
        var name = r.Tool.CommandName;
        if (r.Port is < 1025 or > 65535)
        {
            await Console.Error.WriteLineAsync("Invalid port number");
            return 0;
        }

        if (r.Tool.NodeIdRequired && r.NodeId is null)
        {
            await Console.Error.WriteLineAsync($"{name}: missing node-id\nTry \"{name} --help\" for more information.\n");
            return 1;
        }

        if (r.NodeId is < 0 or > 128 && !(r.Tool.Verb == "node-info" && r.NodeId == -1))
        {
            await Console.Error.WriteLineAsync("Invalid node-id");
            return 0;
        }

        try
        {
            await using var client = await PcpClient.ConnectAsync(r.Host, r.Port, r.Debug);
            var password = PcpPassword.Find(r.Host, r.Port, r.User, r.ForcePassword, r.NoPassword);
            try
            {
                await client.AuthenticateAsync(r.User, password);
            }
            catch (PcpServerError e)
            {
                throw new PcpToolException($"{e.Severity}:  {e.Message}" + (e.Detail is null ? "" : $"\nDETAIL:  {e.Detail}") + "\n");
            }

            var output = new StringBuilder();
            await RunToolAsync(client, r, output);
            Console.Out.Write(output.ToString());
            return 0;
        }
        catch (PcpServerError e)
        {
            await Console.Error.WriteAsync($"{e.Severity}:  {e.Message}\n" + (e.Detail is null ? "" : $"DETAIL:  {e.Detail}\n") + "\n");
            return 0;
        }
        catch (PcpToolException e)
        {
            await Console.Error.WriteLineAsync(e.Message);
            return e.ExitCode;
        }
        catch (Exception e) when (e is IOException or EndOfStreamException or PcpProtocolException)
        {
            await Console.Error.WriteLineAsync($"ERROR: unable to read data from the server: {e.Message}");
            return 1;
        }
    }

    private static byte[] Id(int id) => Encoding.ASCII.GetBytes(id.ToString(CultureInfo.InvariantCulture) + "\0");

    private static bool EndsWithCommandComplete(byte tag, byte[] body) =>
        PcpPacket.SplitStrings(body) is [PcpPacket.CommandComplete, ..];

    private static async Task RunToolAsync(PcpClient client, PcpRequest r, StringBuilder o)
    {
        var success = $"{r.Tool.CommandName} -- Command Successful\n";
        switch (r.Tool.Verb)
        {
            case "node-count":
                {
                    var reply = await client.RequestAsync((byte)'L', [], EndsWithCommandComplete);
                    var count = PcpPacket.SplitStrings(reply[^1].Body)[1];
                    o.Append(r.Verbose ? $"Node Count\n____________\n {count}\n" : $"{count}\n");
                    break;
                }

            case "node-info":
                {
                    var reply = await client.RequestAsync((byte)'I', Id(r.NodeId ?? -1), EndsWithCommandComplete);
                    var printed = 0;
                    foreach (var (_, body) in reply)
                    {
                        var fields = PcpPacket.SplitStrings(body);
                        if (fields.Count < 13 || fields[0] != "NodeInfo" || (fields[1].Length == 0 && !r.All))
                        {
                            continue;
                        }

                        o.Append(FormatNodeInfo(fields.Skip(1).ToList(), r.Verbose));
                        printed++;
                    }

                    if (printed == 0)
                    {
                        o.Append("No node information available\n\n");
                    }

                    break;
                }

            case "health-check-stats":
                {
                    var reply = await client.RequestAsync((byte)'H', Id(r.NodeId!.Value), EndsWithCommandComplete);
                    var fields = PcpPacket.SplitStrings(reply[^1].Body).Skip(1).ToList();
                    if (r.Verbose)
                    {
                        string[] titles =
                        [
                            "Node Id", "Host Name", "Port", "Status", "Role", "Last Status Change", "Total Count", "Success Count", "Fail Count",
                        "Skip Count", "Retry Count", "Average Retry Count", "Max Retry Count", "Max Health Check Duration",
                        "Minimum Health Check Duration", "Average Health Check Duration", "Last Health Check", "Last Successful Health Check",
                        "Last Skip Health Check", "Last Failed Health Check",
                    ];
                        o.Append(Aligned(titles, fields)).Append('\n');
                    }
                    else
                    {
                        o.Append(string.Join(' ', fields)).Append('\n');
                    }

                    break;
                }

            case "pool-status":
                {
                    var reply = await client.RequestAsync((byte)'B', [], EndsWithCommandComplete);
                    var index = 0;
                    foreach (var (_, body) in reply)
                    {
                        var fields = PcpPacket.SplitStrings(body);
                        if (fields is not ["ProcessConfig", var name, var value, var description, ..])
                        {
                            continue;
                        }

                        description = NodeReport.Truncate(description);

                        o.Append(r.Verbose
                            ? $"Name [{index,3}]:\t{name}\nValue:      \t{value}\nDescription:\t{description}\n\n"
                            : $"name : {name}\nvalue: {value}\ndesc : {description}\n\n");
                        index++;
                    }

                    break;
                }

            case "proc-count":
                {
                    var reply = await client.RequestAsync((byte)'N', [], EndsWithCommandComplete);
                    var pids = PcpPacket.SplitStrings(reply[^1].Body).Skip(2).ToList();
                    if (r.Verbose)
                    {
                        o.Append("No \t | \t PID\n_____________________\n");
                        for (var i = 0; i < pids.Count; i++)
                        {
                            o.Append(CultureInfo.InvariantCulture, $"{i} \t | \t {pids[i]}\n");
                        }

                        o.Append(CultureInfo.InvariantCulture, $"\nTotal Processes:{pids.Count}\n");
                    }
                    else
                    {
                        foreach (var pid in pids)
                        {
                            o.Append(pid).Append(' ');
                        }

                        o.Append('\n');
                    }

                    break;
                }

            case "proc-info":
                {
                    var reply = await client.RequestAsync((byte)'P', Id(r.ProcessId ?? 0), EndsWithCommandComplete);
                    var printed = 0;
                    foreach (var (_, body) in reply)
                    {
                        var fields = PcpPacket.SplitStrings(body);
                        if (fields.Count < 18 || fields[0] != "ProcessInfo" || (fields[6].Length == 0 && !r.All))
                        {
                            continue;
                        }

                        o.Append(FormatProcessInfo(fields.Skip(1).ToList(), r.Verbose));
                        printed++;
                    }

                    if (printed == 0)
                    {
                        o.Append("No process information available\n\n");
                    }

                    break;
                }

            case "attach-node":
                await client.RequestAsync((byte)'C', Id(r.NodeId!.Value), EndsWithCommandComplete);
                o.Append(success);
                break;
            case "detach-node":
                await client.RequestAsync(r.Gracefully ? (byte)'d' : (byte)'D', Id(r.NodeId!.Value), EndsWithCommandComplete);
                o.Append(success);
                break;
            case "promote-node":
                {
                    var body = Encoding.ASCII.GetBytes(r.NodeId!.Value.ToString(CultureInfo.InvariantCulture) + " \0" + (r.Switchover ? "s" : "n"));
                    await client.RequestAsync(r.Gracefully ? (byte)'j' : (byte)'J', body, EndsWithCommandComplete);
                    o.Append(success);
                    break;
                }

            case "recovery-node":
                await client.RequestAsync((byte)'O', Id(r.NodeId!.Value), EndsWithCommandComplete);
                o.Append(success);
                break;
            case "stop-pgpool":
                {
                    var mode = (r.Mode ?? "s") switch
                    {
                        "s" or "smart" => 's',
                        "f" or "fast" => 'f',
                        "i" or "immediate" => 'i',
                        var other => throw new PcpToolException($"{r.Tool.CommandName}: Invalid shutdown mode \"{other}\", valid modes are \"s\", \"f\" and \"i\""),
                    };
                    var scope = (r.Scope ?? "l")[0] == 'c' ? (byte)'t' : (byte)'T';
                    await client.RequestAsync(scope, [(byte)mode], EndsWithCommandComplete);
                    o.Append(success);
                    break;
                }

            case "reload-config":
                await client.RequestAsync((byte)'Z', [(byte)((r.Scope ?? "l")[0] == 'c' ? 'c' : 'l')], EndsWithCommandComplete);
                o.Append(success);
                break;
            case "watchdog-info":
                {
                    var reply = await client.RequestAsync((byte)'W', Id(r.NodeId ?? -1), EndsWithCommandComplete);
                    o.Append(PcpPacket.SplitStrings(reply[^1].Body).Skip(1).FirstOrDefault() ?? "").Append('\n');
                    break;
                }
        }
    }

    /// <summary><c>%s %d %d %f %s %s %s %s %lu %s %s %s</c>, or the titled block with -v.</summary>
    private static string FormatNodeInfo(List<string> f, bool verbose)
    {
        // 4.3: host port status quarantine pg_status weight role pg_role delay rep_state sync_state changed; 4.4+ adds delay_by_time before delay.
        var v44 = f.Count >= 13;
        var (delay, state, sync, changed) = v44 ? (f[9], f[10], f[11], f[12]) : (f[8], f[9], f[10], f[11]);
        if (v44 && f[8] == "1" && long.TryParse(delay, CultureInfo.InvariantCulture, out var micros))
        {
            delay = (micros / 1_000_000.0).ToString("F6", CultureInfo.InvariantCulture);
        }

        var statusName = f[2] switch
        {
            "1" => "waiting",
            "2" => "up",
            "3" => f[3] == "1" ? "quarantine" : "down",
            _ => "unused",
        };
        var role = f[6] switch
        {
            "0" => "main",
            "1" => "replica",
            "2" => "primary",
            "3" => "standby",
            _ => "unknown",
        };
        var weight = (double.Parse(f[5], CultureInfo.InvariantCulture) / RandMax).ToString("F6", CultureInfo.InvariantCulture);
        var time = long.TryParse(changed, CultureInfo.InvariantCulture, out var seconds)
            ? DateTimeOffset.FromUnixTimeSeconds(seconds).ToLocalTime().ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture)
            : changed;
        string[] values = [f[0], f[1], f[2], weight, statusName, f[4], role, f[7], delay, state.Length == 0 ? "none" : state, sync.Length == 0 ? "none" : sync, time];
        if (!verbose)
        {
            return string.Join(' ', values) + "\n";
        }

        string[] titles =
        [
            "Hostname", "Port", "Status", "Weight", "Status Name", "Backend Status Name", "Role", "Backend Role", "Replication Delay",
            "Replication State", "Replication Sync State", "Last Status Change",
        ];
        return Aligned(titles, values) + "\n";
    }

    /// <summary>Wire order → pgpool's CLI order (database, username, start time … status).</summary>
    private static string FormatProcessInfo(List<string> f, bool verbose)
    {
        // Wire: 0 pid, 1 start, 2 client count, 3 pool id, 4 backend id, 5 db, 6 user, 7 backend conn time, 8 client conn time,
        // 9 client disconn time, 10 idle, 11 major, 12 minor, 13 counter, 14 backend pid, 15 connected, 16 status.
        string[] values = [f[5], f[6], f[1], f[2], f[11], f[12], f[7], f[8], f[10], f[9], f[13], f[14], f[15], f[0], f[4], f[16]];
        if (!verbose)
        {
            return string.Join(' ', values) + "\n";
        }

        string[] titles =
        [
            "Database", "Username", "Start time", "Client connection count", "Major", "Minor", "Backend connection time",
            "Client connection time", "Client idle duration", "Client disconnection time", "Pool Counter", "Backend PID", "Connected",
            "PID", "Backend ID", "Status",
        ];
        return Aligned(titles, values) + "\n";
    }

    private static string Aligned(string[] titles, IReadOnlyList<string> values)
    {
        var width = titles.Max(t => t.Length);
        var o = new StringBuilder();
        for (var i = 0; i < titles.Length; i++)
        {
            o.Append(titles[i].PadRight(width)).Append(" : ").Append(i < values.Count ? values[i] : "").Append('\n');
        }

        return o.ToString();
    }
}
