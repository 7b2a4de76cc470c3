using Poold.Config;
using Poold.Hosting;

namespace Poold;

internal static class Program
{
    public static async Task<int> Main(string[] args)
    {
        var root = CommandLine.Build(RunAsync);
        return await root.Parse(args, CommandLine.ParserConfiguration).InvokeAsync();
    }

    private static Task<int> RunAsync(HostOptions options, CancellationToken ct)
    {
        try
        {
            var (_, warnings) = PooldSettings.Load(options.ConfigFile);
            foreach (var warning in warnings)
            {
                Console.Error.WriteLine($"poold: {warning}");
            }
        }
        catch (ConfigException e)
        {
            foreach (var diagnostic in e.Diagnostics)
            {
                Console.Error.WriteLine($"poold: {diagnostic}");
            }

            return Task.FromResult(1);
        }

        Console.Error.WriteLine("poold: configuration loaded; the proxy listener is not part of this build yet");
        return Task.FromResult(ct.IsCancellationRequested ? 1 : 0);
    }
}
