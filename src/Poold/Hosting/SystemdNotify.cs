using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text;

namespace Poold.Hosting;

/// <summary>
/// sd_notify(3) without libsystemd: datagrams to the unix socket named in <c>NOTIFY_SOCKET</c> (a path, or an
/// abstract name written with a leading '@'). Tells systemd READY=1 once the listeners are up, RELOADING=1 with
/// MONOTONIC_USEC / READY=1 around a reload (Type=notify-reload in systemd 253 wants the timestamp), STOPPING=1,
/// STATUS= lines, and WATCHDOG=1 at half of <c>WATCHDOG_USEC</c> when that is set for this process. Without
/// NOTIFY_SOCKET every call does nothing. Send failures are ignored: systemd being gone must not stop Poold.
/// </summary>
internal sealed class SystemdNotify : IDisposable
{
    private readonly Socket _socket;
    private readonly UnixDomainSocketEndPoint _target;
    private readonly Func<string>? _status;
    private readonly Timer? _timer;
    private readonly Lock _lock = new();
    private bool _disposed;

    private SystemdNotify(UnixDomainSocketEndPoint target, TimeSpan? watchdog, Func<string>? status)
    {
        _socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        _target = target;
        _status = status;
        WatchdogInterval = watchdog;
        // The keep-alive also refreshes STATUS=; without a watchdog the status is refreshed every 10 s.
        var period = watchdog is { } w ? w / 2 : TimeSpan.FromSeconds(10);
        if (watchdog is not null || status is not null)
        {
            _timer = new Timer(_ => Tick(), null, period, period);
        }
    }

    /// <summary>Half of this is the keep-alive period; null when systemd asked for no watchdog.</summary>
    public TimeSpan? WatchdogInterval { get; }

    /// <summary>
    /// The notifier for this process, or null without NOTIFY_SOCKET. <paramref name="status"/> renders the STATUS=
    /// text sent with READY=1 and with each keep-alive.
    /// </summary>
    public static SystemdNotify? FromEnvironment(Func<string>? status = null, Func<string, string?>? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariable;
        var socket = environment("NOTIFY_SOCKET");
        if (string.IsNullOrEmpty(socket) || (socket[0] != '/' && socket[0] != '@'))
        {
            return null; // vsock: and other forms are not for a service like this one
        }

        var path = socket[0] == '@' ? "\0" + socket[1..] : socket;
        return new SystemdNotify(new UnixDomainSocketEndPoint(path), Watchdog(environment), status);
    }

    /// <summary>WATCHDOG_USEC, when WATCHDOG_PID is absent or names this process.</summary>
    internal static TimeSpan? Watchdog(Func<string, string?> environment)
    {
        var pid = environment("WATCHDOG_PID");
        if (!string.IsNullOrEmpty(pid) && pid != Environment.ProcessId.ToString(CultureInfo.InvariantCulture))
        {
            return null;
        }

        return long.TryParse(environment("WATCHDOG_USEC"), NumberStyles.None, CultureInfo.InvariantCulture, out var usec) && usec > 0
            ? TimeSpan.FromMicroseconds(usec)
            : null;
    }

    /// <summary>CLOCK_MONOTONIC in microseconds, as RELOADING=1's MONOTONIC_USEC wants (Stopwatch reads that clock on Linux).</summary>
    internal static long MonotonicMicroseconds() => (long)(Stopwatch.GetTimestamp() * (1_000_000.0 / Stopwatch.Frequency));

    public void Ready() => Send("READY=1" + StatusLine());

    public void Reloading() => Send($"RELOADING=1\nMONOTONIC_USEC={MonotonicMicroseconds().ToString(CultureInfo.InvariantCulture)}");

    public void Stopping() => Send("STOPPING=1");

    private string StatusLine() => _status is null ? "" : "\nSTATUS=" + _status().ReplaceLineEndings(" ");

    private void Tick()
    {
        var state = WatchdogInterval is null ? StatusLine().TrimStart('\n') : "WATCHDOG=1" + StatusLine();
        if (state.Length > 0)
        {
            Send(state);
        }
    }

    /// <summary>Sends one notification datagram; false when it could not be sent.</summary>
    public bool Send(string state)
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return false;
            }

            try
            {
                _socket.SendTo(Encoding.UTF8.GetBytes(state), SocketFlags.None, _target);
                return true;
            }
            catch (SocketException)
            {
                return false;
            }
        }
    }

    public void Dispose()
    {
        _timer?.Dispose();
        lock (_lock)
        {
            _disposed = true;
            _socket.Dispose();
        }
    }
}
