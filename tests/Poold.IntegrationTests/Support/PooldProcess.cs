using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text;

namespace Poold.IntegrationTests.Support;

/// <summary>
/// Poold as operators run it: <c>poold -n -f poold.conf</c> in its own process (the build next to the tests), its
/// output captured. For what only a separate process shows: memory use, signals, the pid file, the stop and reload
/// commands.
/// </summary>
internal sealed class PooldProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private bool _keepDirectory;

    private PooldProcess(Process process, string directory, int port, string configFile)
    {
        _process = process;
        Directory = directory;
        Port = port;
        ConfigFile = configFile;
    }

    public string Directory { get; }

    public int Port { get; }

    public string ConfigFile { get; }

    public int Pid => _process.Id;

    public bool HasExited => _process.HasExited;

    /// <summary>The exit code, once <see cref="HasExited"/>.</summary>
    public int ExitCode => _process.ExitCode;

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>
    /// Starts Poold with the given config lines and returns once it accepts connections; <paramref name="whileStarting"/>,
    /// when given, runs as soon as the process exists (before it listens), for what a script may do to a Poold that is
    /// still starting.
    /// </summary>
    public static async Task<PooldProcess> StartAsync(string backendsAndExtra, bool ssl = false,
        IReadOnlyDictionary<string, string>? environment = null, int? port = null, Func<PooldProcess, Task>? whileStarting = null)
    {
        var (dir, listening, conf) = await PooldInstance.WriteConfigAsync(backendsAndExtra, ssl, port);
        return await LaunchAsync(dir, listening, conf, environment, whileStarting);
    }

    /// <summary>
    /// Starts a new process on this instance's config, directory and port (pgpool_status included), once this one has
    /// exited; the new instance owns the directory from then on.
    /// </summary>
    public Task<PooldProcess> RestartAsync()
    {
        if (!_process.HasExited)
        {
            throw new InvalidOperationException("poold is still running: stop it first");
        }

        _keepDirectory = true;
        return LaunchAsync(Directory, Port, ConfigFile);
    }

    private static async Task<PooldProcess> LaunchAsync(string dir, int port, string conf, IReadOnlyDictionary<string, string>? environment = null,
        Func<PooldProcess, Task>? whileStarting = null)
    {
        var info = StartInfo(["-n", "-f", conf]);
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            info.Environment[name] = value;
        }

        var process = Process.Start(info) ?? throw new InvalidOperationException("could not start poold");
        var poold = new PooldProcess(process, dir, port, conf);
        process.OutputDataReceived += (_, e) => poold.Append(e.Data);
        process.ErrorDataReceived += (_, e) => poold.Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (whileStarting is not null)
        {
            await whileStarting(poold);
        }

        await Poll.UntilAsync(async () =>
        {
            if (process.HasExited)
            {
                throw new InvalidOperationException($"poold exited with code {process.ExitCode} at start:\n{poold.Output}");
            }

            using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
            try
            {
                await socket.ConnectAsync("127.0.0.1", port);
                return true;
            }
            catch (SocketException)
            {
                return false;
            }
        }, TimeSpan.FromSeconds(30), "poold to listen");
        return poold;
    }

    /// <summary>Runs another <c>poold</c> command (stop, reload) against this instance's config; returns its exit code and output.</summary>
    public Task<(int ExitCode, string Output)> RunCommandAsync(params string[] arguments) => RunCommandAsync(ConfigFile, arguments);

    /// <summary>Runs a <c>poold</c> command against any config file.</summary>
    public static async Task<(int ExitCode, string Output)> RunCommandAsync(string configFile, params string[] arguments)
    {
        var (code, stdout, stderr) = await ProcessRunner.RunAsync(StartInfo(["-f", configFile, .. arguments]), TimeSpan.FromSeconds(60));
        return (code, stdout + stderr);
    }

    /// <summary>
    /// After a signal or command sent to Poold: polls until <paramref name="effect"/> holds (or Poold exits), and fails
    /// with <see cref="SignalReport"/> when it does not hold within <paramref name="timeout"/>.
    /// </summary>
    public async Task WaitForSignalEffectAsync(Func<bool> effect, TimeSpan timeout, string what)
    {
        try
        {
            await Poll.UntilAsync(() => Task.FromResult(effect() || HasExited), timeout, what);
        }
        catch (TimeoutException)
        {
            Assert.Fail($"no {what} in {timeout.TotalSeconds:0} s; {SignalReport()}");
        }

        Assert.That(effect(), Is.True, $"no {what}; {SignalReport()}");
    }

    /// <summary>
    /// The process's signal state as the kernel sees it, per thread (pending, blocked, ignored, caught), and Poold's
    /// output: what a test prints when a signal sent to Poold seems to have no effect.
    /// </summary>
    public string SignalReport()
    {
        var report = new StringBuilder();
        try
        {
            foreach (var task in System.IO.Directory.GetDirectories($"/proc/{Pid}/task"))
            {
                var fields = File.ReadLines(Path.Combine(task, "status"))
                    .Where(line => line.StartsWith("Sig", StringComparison.Ordinal) || line.StartsWith("ShdPnd", StringComparison.Ordinal))
                    .Select(line => line.Replace('\t', ' '));
                report.AppendLine(CultureInfo.InvariantCulture, $"{File.ReadAllText(Path.Combine(task, "comm")).Trim()}: {string.Join("; ", fields)}");
            }
        }
        catch (IOException e)
        {
            report.AppendLine(CultureInfo.InvariantCulture, $"(no /proc entry: {e.Message})");
        }

        return $"exited: {HasExited}\nsignal state by thread:\n{report}Poold printed:\n{Output}";
    }

    /// <summary>The peak resident set size of the process (VmHWM), in bytes.</summary>
    public long PeakResidentBytes()
    {
        foreach (var line in File.ReadLines($"/proc/{Pid}/status"))
        {
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
            {
                var kb = line["VmHWM:".Length..].Trim().Split(' ')[0];
                return long.Parse(kb, CultureInfo.InvariantCulture) * 1024;
            }
        }

        throw new InvalidOperationException("VmHWM not found in /proc status");
    }

    public async Task WaitForExitAsync(TimeSpan timeout)
    {
        using var deadline = new CancellationTokenSource(timeout);
        await _process.WaitForExitAsync(deadline.Token);
    }

    private static ProcessStartInfo StartInfo(IEnumerable<string> arguments)
    {
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        // The daemon chooses its socket engine settings itself, as when an operator starts it (Hosting/SocketTuning).
        info.Environment.Remove("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS");
        info.Environment.Remove("DOTNET_SYSTEM_NET_SOCKETS_THREAD_COUNT");
        info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "poold.dll"));
        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        return info;
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            _output.AppendLine(line);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
        if (_keepDirectory)
        {
            return;
        }

        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
            // A socket file still closing: the temp directory is cleaned by the OS.
        }
    }
}
