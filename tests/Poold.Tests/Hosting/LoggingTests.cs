using System.Globalization;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Poold.Hosting;
using Serilog.Events;
using Serilog.Parsing;

namespace Poold.Tests.Hosting;

public class LoggingTests
{
    [Test]
    public void Syslog_SendsRfc3164Datagrams_ToTheConfiguredSocket_WithFacilityAndIdent()
    {
        var path = Path.Combine(Path.GetTempPath(), $"poold-syslog-{Guid.NewGuid():N}.sock");
        using var server = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        server.Bind(new UnixDomainSocketEndPoint(path));
        server.ReceiveTimeout = 10_000;
        try
        {
            var stderr = new StringWriter();
            using (var logger = Logging.Create(TestSettings.Parse($"""
                log_destination = 'syslog'
                syslog_facility = 'LOCAL3'
                syslog_ident = 'poold-test'
                syslog_socket = '{path}'
                log_line_prefix = '%a: '
                log_min_messages = info
                """), debug: false, stderr))
            {
                logger.Information("hello {Who}", "syslog");
                logger.Warning("careful");
            }

            var buffer = new byte[4096];
            var first = Encoding.UTF8.GetString(buffer, 0, server.Receive(buffer));
            var second = Encoding.UTF8.GetString(buffer, 0, server.Receive(buffer));
            var pid = Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
            // LOCAL3 = 19: 19 * 8 + 6 (info), + 4 (warning).
            Assert.That(first, Does.Match($@"^<158>[A-Z][a-z]{{2}} [ 1-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-5][0-9] poold-test\[{pid}\]: poold: INFORMATION: hello syslog$"));
            Assert.That(second, Does.Match($@"^<156>.* poold-test\[{pid}\]: poold: WARNING: careful$"));
            Assert.That(stderr.ToString(), Is.Empty, "syslog alone: nothing on stderr");
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void Reconfigure_SwapsPrefixLevelAndFormat_ForLoggersAlreadyHandedOut()
    {
        var stderr = new StringWriter();
        using var root = Logging.Create(TestSettings.Parse("log_line_prefix = 'one: '\nlog_min_messages = warning"), debug: false, stderr);
        var component = root.ForContext("SessionId", 5);
        component.Information("hidden at warning");
        component.Warning("first");
        Logging.Reconfigure(root, TestSettings.Parse("log_line_prefix = 'two: '\nlog_min_messages = info"));
        component.Information("second");
        Logging.Reconfigure(root, TestSettings.Parse("log_format = json\nlog_min_messages = info"));
        component.Information("third");
        root.Dispose();

        var lines = stderr.ToString().TrimEnd().Split(Environment.NewLine);
        Assert.That(lines, Has.Length.EqualTo(3), stderr.ToString());
        Assert.That(lines[0], Is.EqualTo("one: WARNING: session 5: first"));
        Assert.That(lines[1], Is.EqualTo("two: INFORMATION: session 5: second"), "the old pipeline was flushed before the new one wrote");
        using var json = JsonDocument.Parse(lines[2]);
        Assert.That(json.RootElement.GetProperty("@m").GetString(), Is.EqualTo("third"));
        Assert.That(json.RootElement.TryGetProperty("SessionPrefix", out _), Is.False, "the text-only property is not in JSON");
    }

    [Test]
    public void Syslog_WithoutTheSocket_DropsEventsAndGoesOn()
    {
        using var logger = Logging.Create(TestSettings.Parse("log_destination = 'stderr,syslog'\nsyslog_socket = '/nonexistent/log'"), debug: false,
            new StringWriter());
        Assert.DoesNotThrow(() => logger.Error("nobody listens"));
    }

    [Test]
    public void Syslog_DayIsSpacePadded()
    {
        var at = new DateTimeOffset(2026, 12, 5, 7, 8, 9, TimeSpan.Zero).ToLocalTime();
        var packet = SyslogSink.Packet(16, LogEventLevel.Error, at, "pgpool", "x");
        Assert.That(packet, Does.StartWith($"<131>Dec {at.Day,2} {at:HH:mm:ss} pgpool["));
    }

    [Test]
    public void JsonFormat_WritesOneCompactObjectPerEvent()
    {
        var stderr = new StringWriter();
        using (var logger = Logging.Create(TestSettings.Parse("log_format = json\nlog_min_messages = info"), debug: false, stderr))
        {
            logger.ForContext("SessionId", 42).Information("connection received: user={User}", "alice");
        }

        var line = stderr.ToString().Trim();
        Assert.That(line.Split('\n'), Has.Length.EqualTo(1));
        using var json = JsonDocument.Parse(line);
        Assert.That(json.RootElement.GetProperty("@m").GetString(), Is.EqualTo("connection received: user=\"alice\""));
        Assert.That(json.RootElement.GetProperty("User").GetString(), Is.EqualTo("alice"));
        Assert.That(json.RootElement.GetProperty("SessionId").GetInt32(), Is.EqualTo(42));
        Assert.That(json.RootElement.TryGetProperty("@t", out _), Is.True);
    }

    [Test]
    public void UnknownDestination_IsReported_AndStderrKept()
    {
        var stderr = new StringWriter();
        using (var logger = Logging.Create(TestSettings.Parse("log_destination = 'eventlog'\nlog_min_messages = info"), debug: false, stderr))
        {
            logger.Information("still here");
        }

        Assert.That(stderr.ToString(), Does.Contain("log_destination \"eventlog\" is not supported").And.Contain("still here"));
    }

    private static LogEvent Event(params (string Name, object Value)[] properties) => new(
        new DateTimeOffset(2026, 12, 5, 12, 34, 56, 789, TimeSpan.Zero), LogEventLevel.Information, null,
        new MessageTemplateParser().Parse("m"), properties.Select(p => new LogEventProperty(p.Name, new ScalarValue(p.Value))));

    [Test]
    public void LinePrefix_RendersTheCommonEscapes()
    {
        var prefix = new LinePrefix("%t|%m|%p|%a|%u|%d|%h|%r|%c|%l|%%|%i%e|%q");
        var session = Event(("SessionId", 7), (LinePrefix.UserProperty, "alice"), (LinePrefix.DatabaseProperty, "shop"),
            (LinePrefix.ApplicationProperty, "psql"), (LinePrefix.HostProperty, "10.0.0.9"), (LinePrefix.PortProperty, "5123"));
        var local = new DateTimeOffset(2026, 12, 5, 12, 34, 56, 789, TimeSpan.Zero).LocalDateTime;
        var pid = Environment.ProcessId;
        Assert.That(prefix.Render(session),
            Is.EqualTo($"{local:yyyy-MM-dd HH:mm:ss}|{local:yyyy-MM-dd HH:mm:ss.fff}|{pid}|psql|alice|shop|10.0.0.9|10.0.0.9(5123)|7|1|%||"));
        Assert.That(prefix.Render(Event()), Does.EndWith($"|{pid}|poold||||||2|%||"), "outside a session; %l counts lines");
        Assert.That(new LinePrefix("%a").Render(Event(("SessionId", 8))), Is.EqualTo("[unknown]"), "a client without application_name");
    }
}
