using System.CommandLine;
using Poold.Hosting;

namespace Poold;

internal static class Program
{
    public static async Task<int> Main(string[] args)
    {
        SocketTuning.Apply();
        if (args.Length == 0 || args[^1] is not ("stop" or "reload"))
        {
            NativeMethods.RestartIfSignalsIgnored();
        }

        var root = CommandLine.Build(HostRunner.RunAsync);
        // Poold handles SIGINT/SIGTERM/SIGQUIT itself (fast, smart, immediate stop, which may take as long as clients
        // need); System.CommandLine's own handler would otherwise end the process with 130 two seconds after SIGINT.
        return await root.Parse(args, CommandLine.ParserConfiguration).InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null });
    }
}
