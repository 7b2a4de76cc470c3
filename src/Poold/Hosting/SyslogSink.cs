using System.Globalization;
using System.Net.Sockets;
using System.Text;
using Serilog.Core;
using Serilog.Events;
using Serilog.Formatting;

namespace Poold.Hosting;

/// <summary>
/// <c>log_destination = 'syslog'</c>: each event as one datagram to the local syslog socket (<c>/dev/log</c>), in the
/// RFC 3164 form the local daemon expects from syslog(3): <c>&lt;PRI&gt;Mmm dd hh:mm:ss ident[pid]: message</c>. When
/// the socket is missing or refuses, the event is dropped and the connection retried with the next one (syslog(3)
/// does the same); Poold never stops for its log.
/// </summary>
internal sealed class SyslogSink : ILogEventSink, IDisposable
{
    private const int MaxDatagram = 64 * 1024 - 512;
    private readonly string _path;
    private readonly int _facility;
    private readonly string _ident;
    private readonly ITextFormatter _formatter;
    private readonly Lock _lock = new();
    private Socket? _socket;

    public SyslogSink(string path, int facility, string ident, ITextFormatter formatter)
    {
        _path = path;
        _facility = facility;
        _ident = ident;
        _formatter = formatter;
    }

    /// <summary>syslog severities: debug 7, info 6, warning 4, err 3, crit 2.</summary>
    internal static int Severity(LogEventLevel level) => level switch
    {
        LogEventLevel.Verbose or LogEventLevel.Debug => 7,
        LogEventLevel.Information => 6,
        LogEventLevel.Warning => 4,
        LogEventLevel.Error => 3,
        _ => 2,
    };

    /// <summary>The datagram for one event (the message already rendered, without its trailing newline).</summary>
    internal static string Packet(int facility, LogEventLevel level, DateTimeOffset at, string ident, string message)
    {
        var local = at.LocalDateTime;
        var month = CultureInfo.InvariantCulture.DateTimeFormat.GetAbbreviatedMonthName(local.Month);
        return string.Create(CultureInfo.InvariantCulture,
            $"<{(facility * 8) + Severity(level)}>{month} {local.Day,2} {local:HH:mm:ss} {ident}[{Environment.ProcessId}]: {message}");
    }

    public void Emit(LogEvent logEvent)
    {
        var message = new StringWriter(CultureInfo.InvariantCulture);
        _formatter.Format(logEvent, message);
        var text = Packet(_facility, logEvent.Level, logEvent.Timestamp, _ident, message.ToString().TrimEnd('\r', '\n'));
        var bytes = Encoding.UTF8.GetBytes(text);
        lock (_lock)
        {
            for (var attempt = 0; attempt < 2; attempt++)
            {
                try
                {
                    _socket ??= Connect();
                    _socket.Send(bytes.AsSpan(0, Math.Min(bytes.Length, MaxDatagram)), SocketFlags.None);
                    return;
                }
                catch (SocketException)
                {
                    // The daemon restarted (its socket is a new one) or is gone: reconnect once, else drop the event.
                    _socket?.Dispose();
                    _socket = null;
                }
            }
        }
    }

    private Socket Connect()
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        try
        {
            socket.Connect(new UnixDomainSocketEndPoint(_path));
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            _socket?.Dispose();
            _socket = null;
        }
    }
}
