using System.Runtime.InteropServices;

namespace Poold.Hosting;

/// <summary>
/// The libc calls .NET has no API for: sending a chosen signal to another process (<c>poold stop</c>), and restoring
/// the default action of a signal the parent left ignored.
/// </summary>
internal static partial class NativeMethods
{
    public const int SigHup = 1;
    public const int SigInt = 2;
    public const int SigQuit = 3;
    public const int SigTerm = 15;

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    public static partial int Kill(int pid, int signal);

    [LibraryImport("libc", EntryPoint = "signal", SetLastError = true)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    private static partial nint Signal(int signal, nint handler);

    [LibraryImport("libc", EntryPoint = "execve", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    private static partial int Execve(string path, string?[] argv, string?[] envp);

    private const string ReexecMarker = "POOLD_STOP_SIGNALS_RESTORED";

    /// <summary>The signals Poold acts on: reload, and the three stop modes.</summary>
    private static readonly int[] HandledSignals = [SigHup, SigInt, SigQuit, SigTerm];

    /// <summary>
    /// A shell starts a background job (<c>poold &amp;</c> in a script) with SIGINT and SIGQUIT ignored, and
    /// <c>nohup</c> starts its command with SIGHUP ignored; the .NET runtime then never handles a signal its parent
    /// left ignored, so <c>poold -m fast stop</c> or <c>poold reload</c> would do nothing. pgpool-II handles them
    /// whatever its parent did; Poold does the same by putting back their default action and starting itself again
    /// (same pid, same arguments) so the runtime installs its handlers. Under nohup a hang-up then reloads, as it does
    /// pgpool-II. Called first thing in Main.
    /// </summary>
    public static void RestartIfSignalsIgnored()
    {
        if (!OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable(ReexecMarker) is not null)
        {
            return;
        }

        const nint defaultAction = 0;
        const nint ignore = 1;
        var ignored = false;
        foreach (var signal in HandledSignals)
        {
            var previous = Signal(signal, ignore);
            Signal(signal, previous);
            ignored |= previous == ignore;
        }

        if (!ignored)
        {
            return;
        }

        foreach (var signal in HandledSignals)
        {
            Signal(signal, defaultAction);
        }

        RemoveDiagnosticsSocket();
        var argv = File.ReadAllText("/proc/self/cmdline").TrimEnd('\0').Split('\0');
        var environment = Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>()
            .Select(e => $"{e.Key}={e.Value}").Append($"{ReexecMarker}=1");
        Execve("/proc/self/exe", [.. argv, null], [.. environment, null]);

        // execve returned: it failed. Carry on with the signals at their default action.
    }

    /// <summary>
    /// The runtime's diagnostics socket (for dotnet-counters, dotnet-trace) is named after the pid and the process start
    /// time, which execve keeps: the new runtime could not bind it while the old file is there, and the tools would find
    /// a socket nobody listens on.
    /// </summary>
    private static void RemoveDiagnosticsSocket()
    {
        try
        {
            foreach (var path in Directory.EnumerateFiles(Path.GetTempPath(), $"dotnet-diagnostic-{Environment.ProcessId}-*-socket"))
            {
                File.Delete(path);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Without it the process still runs; only the diagnostics tools cannot attach.
        }
    }
}
