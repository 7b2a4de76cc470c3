using Poold.Config;
using Serilog;
using Serilog.Core;
using Serilog.Events;
using Serilog.Formatting;
using Serilog.Formatting.Compact;
using Serilog.Formatting.Display;

namespace Poold.Hosting;

/// <summary>
/// Builds the root Serilog logger from pgpool-II's logging settings: <c>log_min_messages</c> (or <c>-d</c>) sets the
/// level; <c>log_destination</c> is <c>stderr</c> and/or <c>syslog</c> (<c>syslog_facility</c>, <c>syslog_ident</c>,
/// the socket <c>syslog_socket</c>); <c>log_format = text</c> writes <c>log_line_prefix</c> then the level and message,
/// <c>json</c> one compact JSON object per event; <c>logging_collector = on</c> adds a file in <c>log_directory</c>.
/// Components get their logger from the host (<c>ForContext</c>), never from the static <c>Log</c>.
/// </summary>
internal static class Logging
{
    private const string Body = "{Level:u}: {SessionPrefix}{Message:lj}{NewLine}{Exception}";

    public static Logger Create(PooldSettings settings, bool debug, TextWriter? stderr = null)
    {
        stderr ??= Console.Error;
        var json = settings.Get(Params.LogFormatting) == LogFormat.Json;
        var prefix = settings.Get(Params.LogLinePrefix);
        ITextFormatter Formatter() => json ? new RenderedCompactJsonFormatter() : new TextFormatter(new LinePrefix(prefix));
        var config = new LoggerConfiguration()
            .MinimumLevel.Is(debug ? LogEventLevel.Debug : Level(settings.Get(Params.LogMinMessages)))
            .Enrich.WithProperty("ProcessId", Environment.ProcessId);
        if (!json)
        {
            config = config.Enrich.With(new SessionPrefixEnricher());
        }

        var destinations = settings.Get(Params.LogDestination).Select(d => d.Trim().ToLowerInvariant()).Where(d => d.Length > 0).ToList();
        foreach (var unknown in destinations.Where(d => d is not ("stderr" or "syslog")))
        {
            stderr.WriteLine($"poold: log_destination \"{unknown}\" is not supported (stderr, syslog); ignored");
        }

        if (destinations.Contains("stderr") || !destinations.Contains("syslog"))
        {
            config = config.WriteTo.Async(a => a.Sink(new WriterSink(stderr, Formatter())), bufferSize: 10_000);
        }

        if (destinations.Contains("syslog"))
        {
            var syslog = new SyslogSink(settings.Get(Params.SyslogSocket), (int)settings.Get(Params.SyslogFacilityParam), settings.Get(Params.SyslogIdent),
                json ? new RenderedCompactJsonFormatter() : new TextFormatter(new LinePrefix(prefix)));
            config = config.WriteTo.Async(a => a.Sink(syslog), bufferSize: 10_000);
        }

        if (settings.Get(Params.LoggingCollector))
        {
            var file = Path.Combine(settings.ResolvePath(settings.Get(Params.LogDirectory)),
                Strftime(settings.Get(Params.LogFilename), DateTime.Now));
            config = config.WriteTo.Async(a => a.File(Formatter(), file));
        }

        return config.CreateLogger();
    }

    /// <summary>log_line_prefix, then the level, the session and the message.</summary>
    private sealed class TextFormatter(LinePrefix prefix) : ITextFormatter
    {
        private readonly MessageTemplateTextFormatter _body = new(Body, System.Globalization.CultureInfo.InvariantCulture);

        public void Format(LogEvent logEvent, TextWriter output)
        {
            output.Write(prefix.Render(logEvent));
            _body.Format(logEvent, output);
        }
    }

    /// <summary>pgpool-II's levels to Serilog's: debug5..debug1 → Verbose/Debug, log/info/notice → Information.</summary>
    public static LogEventLevel Level(MessageLevel level) => level switch
    {
        MessageLevel.Debug5 or MessageLevel.Debug4 or MessageLevel.Debug3 => LogEventLevel.Verbose,
        MessageLevel.Debug2 or MessageLevel.Debug1 => LogEventLevel.Debug,
        MessageLevel.Log or MessageLevel.Info or MessageLevel.Notice => LogEventLevel.Information,
        MessageLevel.Warning => LogEventLevel.Warning,
        MessageLevel.Error => LogEventLevel.Error,
        _ => LogEventLevel.Fatal,
    };

    /// <summary>The strftime escapes log_filename uses: %Y %m %d %H %M %S %%.</summary>
    public static string Strftime(string pattern, DateTime at) => pattern
        .Replace("%%", "\u0000", StringComparison.Ordinal)
        .Replace("%Y", at.ToString("yyyy", System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal)
        .Replace("%m", at.ToString("MM", System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal)
        .Replace("%d", at.ToString("dd", System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal)
        .Replace("%H", at.ToString("HH", System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal)
        .Replace("%M", at.ToString("mm", System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal)
        .Replace("%S", at.ToString("ss", System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal)
        .Replace("\u0000", "%", StringComparison.Ordinal);

    /// <summary>Writes formatted events to a TextWriter (stderr, or a test's capture).</summary>
    private sealed class WriterSink(TextWriter writer, ITextFormatter formatter) : ILogEventSink
    {
        private readonly ITextFormatter _formatter = formatter;
        private readonly Lock _lock = new();

        public void Emit(LogEvent logEvent)
        {
            lock (_lock)
            {
                _formatter.Format(logEvent, writer);
                writer.Flush();
            }
        }
    }

    /// <summary>Renders "session N: " before the message of events that carry a SessionId.</summary>
    private sealed class SessionPrefixEnricher : ILogEventEnricher
    {
        public void Enrich(LogEvent logEvent, ILogEventPropertyFactory propertyFactory)
        {
            var prefix = logEvent.Properties.TryGetValue("SessionId", out var id) ? $"session {id}: " : "";
            logEvent.AddPropertyIfAbsent(propertyFactory.CreateProperty("SessionPrefix", prefix));
        }
    }
}
