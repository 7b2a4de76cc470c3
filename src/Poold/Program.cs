using Poold.Hosting;

namespace Poold;

internal static class Program
{
    public static async Task<int> Main(string[] args)
    {
        var root = CommandLine.Build(HostRunner.RunAsync);
        return await root.Parse(args, CommandLine.ParserConfiguration).InvokeAsync();
    }
}
