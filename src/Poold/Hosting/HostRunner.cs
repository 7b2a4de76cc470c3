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
        using var hup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, c =>
        {
            c.Cancel = true;
            host.Reload();
        });
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => Stop(c, host, StopMode.Smart));
        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => Stop(c, host, StopMode.Fast));
        using var quit = PosixSignalRegistration.Create(PosixSignal.SIGQUIT, c => Stop(c, host, StopMode.Immediate));
        await using (cancellationToken.Register(() => _ = host.StopAsync(StopMode.Fast)))
        {
            log.Information("poold started (pid {Pid}), configuration {ConfigFile}", Environment.ProcessId, options.ConfigFile);
            notify?.Ready();
            await host.Completion;
        }

        await host.DisposeAsync();
        PidFile.Delete(pidFile);
        return 0;
    }

    private static void Stop(PosixSignalContext context, PooldHost host, StopMode mode)
    {
        context.Cancel = true;
        _ = host.StopAsync(mode);
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
