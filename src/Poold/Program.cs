using Poold.Hosting;

namespace Poold;

internal static class Program
{
    public static async Task<int> Main(string[] args)
    {
        SocketTuning.Apply();
        if (args.Length == 0 || args[^1] is not ("stop" or "reload"))
        {
            NativeMethods.RestartIfStopSignalsIgnored();
        }

        var root = CommandLine.Build(HostRunner.RunAsync);
        return await root.Parse(args, CommandLine.ParserConfiguration).InvokeAsync();
    }
}
