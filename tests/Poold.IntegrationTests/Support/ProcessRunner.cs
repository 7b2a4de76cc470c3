using System.Diagnostics;

namespace Poold.IntegrationTests.Support;

/// <summary>Runs a command to its end for a test: both outputs read as it runs, stdin closed, a deadline that kills it.</summary>
internal static class ProcessRunner
{
    public static async Task<(int ExitCode, string Stdout, string Stderr)> RunAsync(ProcessStartInfo start, TimeSpan timeout)
    {
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        start.RedirectStandardInput = true;
        start.UseShellExecute = false;
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {start.FileName}");
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var deadline = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(deadline.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{Path.GetFileName(start.FileName)} {string.Join(' ', start.ArgumentList)} did not finish within {timeout.TotalSeconds:0} s");
        }

        return (process.ExitCode, await stdout, await stderr);
    }
}
