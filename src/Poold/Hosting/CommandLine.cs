using System.CommandLine;
using System.CommandLine.Invocation;

namespace Poold.Hosting;

/// <summary>What the operator asked for on the command line.</summary>
internal enum HostCommand
{
    Run,
    Stop,
    Reload,
}

internal enum StopMode
{
    Smart,
    Fast,
    Immediate,
}

/// <summary>The command line, as pgpool-II's: <c>poold [-f CONF] [-a HBA] [-F PCP] [-k KEY] [-n] [-D] [-d] [-m MODE] [stop|reload]</c>.</summary>
internal sealed record HostOptions(
    HostCommand Command,
    string ConfigFile,
    string? HbaFile,
    string? PcpFile,
    string? KeyFile,
    bool Foreground,
    bool DiscardStatus,
    bool Debug,
    StopMode StopMode)
{
    /// <summary>pgpool-II looks in its configuration directory; Poold's default is <c>etc/poold.conf</c>, as installed.</summary>
    public const string DefaultConfigFile = "etc/poold.conf";
}

internal static class CommandLine
{
    public static RootCommand Build(Func<HostOptions, CancellationToken, Task<int>> run)
    {
        var config = new Option<string>("--config-file", "-f")
        {
            Description = "pgpool.conf-compatible configuration file",
            DefaultValueFactory = _ => HostOptions.DefaultConfigFile,
            HelpName = "CONFIG_FILE",
        };
        var hba = new Option<string>("--hba-file", "-a") { Description = "pool_hba.conf (default: pool_hba.conf beside the config file)", HelpName = "HBA_CONFIG_FILE" };
        var pcp = new Option<string>("--pcp-file", "-F") { Description = "pcp.conf (default: pcp.conf beside the config file)", HelpName = "PCP_CONFIG_FILE" };
        var key = new Option<string>("--key-file", "-k")
        {
            Description = "AES key file for pool_passwd (default: $PGPOOLKEYFILE, then ~/.pgpoolkey)",
            HelpName = "KEY_FILE",
        };
        var foreground = new Option<bool>("--dont-detach", "-n") { Description = "stay in the foreground (Poold never forks; accepted for pgpool-II scripts)" };
        var discard = new Option<bool>("--discard-status", "-D") { Description = "discard the saved node status (pgpool_status) at start" };
        var debug = new Option<bool>("--debug", "-d") { Description = "debug-level logging" };
        var mode = new Option<string>("--mode", "-m")
        {
            Description = "stop mode: smart (wait for clients), fast (disconnect them), immediate; the first letter is enough",
            DefaultValueFactory = _ => "smart",
            HelpName = "SHUTDOWN_MODE",
        };
        mode.Validators.Add(r =>
        {
            if (ParseStopMode(r.GetValueOrDefault<string>()) is null)
            {
                r.AddError($"invalid stop mode \"{r.GetValueOrDefault<string>()}\": use smart, fast or immediate");
            }
        });
        var command = new Argument<string?>("command")
        {
            Description = "stop or reload a running poold (reads pid_file_name from the config file); omit to start",
            Arity = ArgumentArity.ZeroOrOne,
            HelpName = "stop|reload",
        };
        command.AcceptOnlyFromAmong("stop", "reload");

        var root = new RootCommand("Poold: a PostgreSQL connection pooler and load balancer, compatible with pgpool-II's files and tools")
        {
            config, hba, pcp, key, foreground, discard, debug, mode, command,
        };
        foreach (var version in root.Options.OfType<VersionOption>())
        {
            version.Action = new PrintVersion();
        }

        root.SetAction((result, ct) =>
        {
            var options = new HostOptions(
                result.GetValue(command) switch
                {
                    "stop" => HostCommand.Stop,
                    "reload" => HostCommand.Reload,
                    _ => HostCommand.Run,
                },
                result.GetValue(config)!,
                result.GetValue(hba),
                result.GetValue(pcp),
                result.GetValue(key),
                result.GetValue(foreground),
                result.GetValue(discard),
                result.GetValue(debug),
                ParseStopMode(result.GetValue(mode)) ?? StopMode.Smart);
            return run(options, ct);
        });
        return root;
    }

    /// <summary>pgpool-II takes s/smart, f/fast, i/immediate: any prefix of the word.</summary>
    public static StopMode? ParseStopMode(string? text) => text?.ToLowerInvariant() switch
    {
        { Length: > 0 } t when "smart".StartsWith(t, StringComparison.Ordinal) => StopMode.Smart,
        { Length: > 0 } t when "fast".StartsWith(t, StringComparison.Ordinal) => StopMode.Fast,
        { Length: > 0 } t when "immediate".StartsWith(t, StringComparison.Ordinal) => StopMode.Immediate,
        _ => null,
    };

    /// <summary><c>--version</c> prints what <c>SHOW POOL_VERSION</c> answers.</summary>
    private sealed class PrintVersion : SynchronousCommandLineAction
    {
        public override int Invoke(ParseResult parseResult)
        {
            parseResult.InvocationConfiguration.Output.WriteLine(Pcp.PoolCommands.Version);
            return 0;
        }
    }

    public static ParserConfiguration ParserConfiguration { get; } = new() { ResponseFileTokenReplacer = null };
}
