using System.Globalization;
using System.Text;
using Serilog.Events;

namespace Poold.Hosting;

/// <summary>
/// pgpool-II's <c>log_line_prefix</c>: %a application name (<c>poold</c> outside sessions, <c>[unknown]</c> when the
/// client sent none), %u user, %d database, %h client host (its name with log_hostname), %r host and port, %p process
/// id, %c session id, %l line number (per process), %t time, %m time with milliseconds, %n Unix epoch with
/// milliseconds, %s Poold's start time, %% a percent sign; other escapes (%i %e %x %v %q ...) print nothing, as
/// PostgreSQL prints nothing for what it does not know.
/// </summary>
internal sealed class LinePrefix(string pattern)
{
    /// <summary>Event properties that session loggers carry (set once the startup packet is read).</summary>
    public const string UserProperty = "PgUser";
    public const string DatabaseProperty = "PgDatabase";
    public const string ApplicationProperty = "PgApplication";
    public const string HostProperty = "PgHost";
    public const string PortProperty = "PgPort";

    private static readonly string StartTime = DateTime.Now.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture);
    private static readonly string Pid = Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
    private long _line;

    public string Render(LogEvent logEvent)
    {
        if (pattern.Length == 0)
        {
            return "";
        }

        var line = Interlocked.Increment(ref _line);
        var text = new StringBuilder(pattern.Length + 48);
        for (var i = 0; i < pattern.Length; i++)
        {
            var c = pattern[i];
            if (c != '%' || i + 1 == pattern.Length)
            {
                text.Append(c);
                continue;
            }

            var local = logEvent.Timestamp.LocalDateTime;
            switch (pattern[++i])
            {
                case '%': text.Append('%'); break;
                case 'a':
                    text.Append(logEvent.Properties.ContainsKey("SessionId") ? Scalar(logEvent, ApplicationProperty) is { Length: > 0 } app ? app : "[unknown]" : "poold");
                    break;
                case 'u': text.Append(Scalar(logEvent, UserProperty)); break;
                case 'd': text.Append(Scalar(logEvent, DatabaseProperty)); break;
                case 'h': text.Append(Scalar(logEvent, HostProperty)); break;
                case 'r':
                    text.Append(Scalar(logEvent, HostProperty));
                    if (Scalar(logEvent, PortProperty) is { Length: > 0 } port)
                    {
                        text.Append('(').Append(port).Append(')');
                    }

                    break;
                case 'p': text.Append(Pid); break;
                case 'c': text.Append(Scalar(logEvent, "SessionId")); break;
                case 'l': text.Append(line.ToString(CultureInfo.InvariantCulture)); break;
                case 't': text.Append(local.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture)); break;
                case 'm': text.Append(local.ToString("yyyy-MM-dd HH:mm:ss.fff", CultureInfo.InvariantCulture)); break;
                case 'n':
                    text.Append((logEvent.Timestamp.ToUnixTimeMilliseconds() / 1000.0).ToString("0.000", CultureInfo.InvariantCulture));
                    break;
                case 's': text.Append(StartTime); break;
                default: break;
            }
        }

        return text.ToString();
    }

    private static string Scalar(LogEvent logEvent, string name) =>
        logEvent.Properties.TryGetValue(name, out var value) && value is ScalarValue { Value: { } v }
            ? Convert.ToString(v, CultureInfo.InvariantCulture) ?? ""
            : "";
}
