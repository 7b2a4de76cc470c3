using System.Diagnostics;
using Poold.IntegrationTests.Support;

namespace Poold.IntegrationTests.Cluster;

internal sealed partial class PgCluster
{
    /// <summary>Runs a command (as the postgres user when root), with a deadline; fails with its output and the node's log tail.</summary>
    private static async Task RunAsync(string file, IReadOnlyList<string> arguments, bool asPostgres, PgNode? node = null)
    {
        var (exitCode, stdout, stderr) = await ProcessRunner.RunAsync(Start(file, arguments, asPostgres), CommandTimeout);
        if (exitCode != 0)
        {
            var log = node is null ? "" : $"\n--- tail of {node.LogFile} ---\n{LogTail(node)}";
            throw new InvalidOperationException(
                $"{Path.GetFileName(file)} {string.Join(' ', arguments)} exited with {exitCode}:\n{stdout}{stderr}{log}");
        }
    }

    private static void RunSync(string file, IReadOnlyList<string> arguments)
    {
        using var process = Process.Start(Start(file, arguments, asPostgres: false));
        process?.WaitForExit(TimeSpan.FromSeconds(30));
    }

    private static ProcessStartInfo Start(string file, IReadOnlyList<string> arguments, bool asPostgres)
    {
        var start = new ProcessStartInfo
        {
            FileName = asPostgres && AsRoot ? "runuser" : file,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = "/tmp",
        };
        if (asPostgres && AsRoot)
        {
            foreach (var a in (string[])["-u", "postgres", "--", file])
            {
                start.ArgumentList.Add(a);
            }
        }

        foreach (var a in arguments)
        {
            start.ArgumentList.Add(a);
        }

        start.Environment["LC_ALL"] = "C";
        start.Environment.Remove("PGPASSWORD");
        return start;
    }

    private static string LogTail(PgNode node)
    {
        try
        {
            var lines = File.ReadAllLines(node.LogFile);
            return string.Join('\n', lines.TakeLast(30));
        }
        catch (IOException)
        {
            return "(no log)";
        }
    }
}
