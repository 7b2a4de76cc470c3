using System.Runtime.InteropServices;
using Poold.Config;

namespace Poold.Hosting;

/// <summary>What <c>poold</c> does for each command: run the daemon, or signal a running one (stop, reload).</summary>
internal static class HostRunner
{
    public static async Task<int> RunAsync(HostOptions options, CancellationToken cancellationToken)
    {
        PooldSettings settings;
        try
        {
            (settings, var warnings) = PooldSettings.Load(options.ConfigFile);
            if (options.Command == HostCommand.Run)
            {
                foreach (var warning in warnings)
                {
                    await Console.Error.WriteLineAsync($"poold: {warning}");
                }
            }
        }
        catch (ConfigException e)
        {
            foreach (var diagnostic in e.Diagnostics)
            {
                await Console.Error.WriteLineAsync($"poold: {diagnostic}");
            }

            return 1;
        }

        return options.Command switch
        {
            HostCommand.Stop => await SignalAsync(settings, options.StopMode switch
            {
                StopMode.Fast => NativeMethods.SigInt,
                StopMode.Immediate => NativeMethods.SigQuit,
                _ => NativeMethods.SigTerm,
            }, wait: true, cancellationToken),
            HostCommand.Reload => await SignalAsync(settings, NativeMethods.SigHup, wait: false, cancellationToken),
            _ => await RunDaemonAsync(settings, options, cancellationToken),
        };
    }

    private static async Task<int> RunDaemonAsync(PooldSettings settings, HostOptions options, CancellationToken cancellationToken)
    {
        await using var log = Logging.Create(settings, options.Debug);
        var pidFile = settings.ResolvePath(settings.Get(Params.PidFileName));

        // Signals are taken from before the pid file names this process: a `poold reload` or `stop` (or a script's
        // kill) that comes while Poold is still starting is applied once it has started. Without a registration SIGHUP's
        // default action would end the process.
        var signals = new HostSignals();
        using var hup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, c =>
        {
            c.Cancel = true;
            signals.Reload();
        });
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => Stop(c, signals, StopMode.Smart));
        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => Stop(c, signals, StopMode.Fast));
        using var quit = PosixSignalRegistration.Create(PosixSignal.SIGQUIT, c => Stop(c, signals, StopMode.Immediate));
        PooldHost host;
        try
        {
            PidFile.Write(pidFile);
        }
        catch (Exception e) when (e is InvalidOperationException or IOException or UnauthorizedAccessException)
        {
            log.Fatal("could not write the pid file: {Reason}", e.Message);
            return 1;
        }

        try
        {
            host = PooldHost.Start(settings, options, log);
        }
        catch (Exception e) when (e is ConfigException or System.Net.Sockets.SocketException or InvalidOperationException or IOException
                                      or UnauthorizedAccessException)
        {
            log.Fatal("could not start: {Reason}", e.Message);
            PidFile.Delete(pidFile);
            return 1;
        }

        using var notify = SystemdNotify.FromEnvironment(host.StatusText);
        host.Notify = notify;
        await using (cancellationToken.Register(() => _ = host.StopAsync(StopMode.Fast)))
        {
            log.Information("poold started (pid {Pid}), configuration {ConfigFile}", Environment.ProcessId, options.ConfigFile);
            notify?.Ready();
            signals.Attach(host);
            await host.Completion;
        }

        await host.DisposeAsync();
        PidFile.Delete(pidFile);
        return 0;
    }

    private static void Stop(PosixSignalContext context, HostSignals signals, StopMode mode)
    {
        context.Cancel = true;
        signals.Stop(mode);
    }

    /// <summary>
    /// Where the signal handlers send reload and stop requests: to the host once it has started; before that, kept (a
    /// reload, and the strongest stop asked for) and applied when it starts.
    /// </summary>
    private sealed class HostSignals
    {
        private readonly Lock _gate = new();
        private PooldHost? _host;
        private bool _reload;
        private StopMode? _stop;

        public void Reload()
        {
            PooldHost? host;
            lock (_gate)
            {
                host = _host;
                _reload |= host is null;
            }

            host?.Reload();
        }

        public void Stop(StopMode mode)
        {
            PooldHost? host;
            lock (_gate)
            {
                host = _host;
                if (host is null && (_stop is null || mode > _stop))
                {
                    _stop = mode;
                }
            }

            if (host is not null)
            {
                _ = host.StopAsync(mode);
            }
        }

        public void Attach(PooldHost host)
        {
            bool reload;
            StopMode? stop;
            lock (_gate)
            {
                _host = host;
                (reload, stop) = (_reload, _stop);
            }

            if (stop is { } mode)
            {
                _ = host.StopAsync(mode);
            }
            else if (reload)
            {
                // The file may have changed after start-up read it.
                host.Reload();
            }
        }
    }

    /// <summary><c>poold stop</c> / <c>poold reload</c>: signal the process named in pid_file_name, as pgpool-II does.</summary>
    private static async Task<int> SignalAsync(PooldSettings settings, int signal, bool wait, CancellationToken cancellationToken)
    {
        var path = settings.ResolvePath(settings.Get(Params.PidFileName));
        if (PidFile.Read(path) is not { } pid)
        {
            await Console.Error.WriteLineAsync($"poold: could not read pid file \"{path}\": is poold running?");
            return 1;
        }

        if (NativeMethods.Kill(pid, signal) != 0)
        {
            await Console.Error.WriteLineAsync($"poold: could not send signal to process {pid}: {Marshal.GetLastPInvokeErrorMessage()}");
            return 1;
        }

        if (!wait)
        {
            return 0;
        }

        Console.Write($"stop request sent to poold (pid: {pid}). waiting for termination...");
        while (PidFile.IsAlive(pid) && !cancellationToken.IsCancellationRequested)
        {
            await Task.Delay(TimeSpan.FromSeconds(1), cancellationToken);
            Console.Write('.');
        }

        Console.WriteLine("done.");
        return 0;
    }
}
