using System.CommandLine;
using System.CommandLine.Help;

namespace Poold.PcpTools;

/// <summary>
/// The <c>pcp</c> program: one verb per pgpool-II pcp_* tool (<c>pcp node-info …</c>); the pcp_* commands are
/// launchers written by scripts/install.sh. Options follow pgpool-II: <c>-h</c> is the host, so help is
/// <c>--help</c> or <c>-?</c>.
/// </summary>
internal static class Program
{
    public static int Main(string[] args)
    {
        var root = new RootCommand("pgpool-II compatible PCP client for Poold (run through the pcp_* commands)");
        ReplaceHelp(root);
        foreach (var tool in PcpToolCatalog.All)
        {
            root.Subcommands.Add(BuildCommand(tool));
        }

        return root.Parse(args, new ParserConfiguration { ResponseFileTokenReplacer = null }).Invoke();
    }

    private static Command BuildCommand(PcpTool tool)
    {
        var command = new Command(tool.Verb, $"{tool.CommandName}: {tool.Description}")
        {
            new Option<string>("--host", "-h") { Description = "PCP server host name, IP address or socket directory", HelpName = "HOSTNAME" },
            new Option<int>("--port", "-p") { Description = "PCP port number", DefaultValueFactory = _ => 9898, HelpName = "PORT" },
            new Option<string>("--username", "-U") { Description = "user name for PCP authentication (default: the OS user)", HelpName = "USERNAME" },
            new Option<bool>("--no-password", "-w") { Description = "never prompt for a password (use .pcppass)" },
            new Option<bool>("--password", "-W") { Description = "force a password prompt" },
            new Option<bool>("--verbose", "-v") { Description = "verbose output" },
            new Option<bool>("--debug", "-d") { Description = "print the messages exchanged with the server" },
        };
        ReplaceHelp(command);
        if (tool.TakesNodeId)
        {
            command.Options.Add(new Option<int?>("--node-id", "-n") { Description = "backend node id", HelpName = "NODEID" });
            command.Arguments.Add(new Argument<int?>("node_id") { Arity = ArgumentArity.ZeroOrOne, Description = "backend node id" });
        }

        foreach (var extra in tool.ExtraOptions)
        {
            command.Options.Add(extra switch
            {
                "-a" => new Option<bool>("--all", "-a") { Description = "display all entries, including unused ones" },
                "-g" => new Option<bool>("--gracefully", "-g") { Description = "wait until all clients have disconnected" },
                "-s" when tool.Verb == "promote-node" => new Option<bool>("--switchover", "-s") { Description = "switch the primary over to this node" },
                "-s" => new Option<string>("--scope", "-s") { Description = "c(luster) or l(ocal, the default)", HelpName = "SCOPE" },
                "-m" => new Option<string>("--mode", "-m") { Description = "s(mart, the default), f(ast) or i(mmediate)", HelpName = "MODE" },
                "-P" => new Option<int?>("--process-id", "-P") { Description = "client session id", HelpName = "PID" },
                _ => throw new InvalidOperationException(extra),
            });
        }

        command.SetAction(async (result, _) =>
        {
            T? Value<T>(string name) => command.Options.FirstOrDefault(o => o.Name == name) is Option<T> option ? result.GetValue(option) : default;
            var nodeId = Value<int?>("--node-id") ?? (command.Arguments.FirstOrDefault() is Argument<int?> argument ? result.GetValue(argument) : null);
            var request = new PcpRequest(tool, Value<string>("--host"), Value<int>("--port"), Value<string>("--username") ?? Environment.UserName,
                Value<bool>("--no-password"), Value<bool>("--password"), Value<bool>("--verbose"), Value<bool>("--debug"), nodeId,
                Value<bool>("--all"), Value<bool>("--gracefully"), Value<bool>("--switchover"), Value<string>("--mode"), Value<string>("--scope"),
                Value<int?>("--process-id"));
            return await PcpCommands.RunAsync(request);
        });
        return command;
    }

    private static void ReplaceHelp(Command command)
    {
        for (var i = command.Options.Count - 1; i >= 0; i--)
        {
            if (command.Options[i] is HelpOption)
            {
                command.Options.RemoveAt(i);
            }
        }

        command.Options.Add(new HelpOption("--help", "-?"));
    }
}
