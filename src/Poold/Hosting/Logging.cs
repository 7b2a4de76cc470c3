using Poold.Config;
using Serilog;
using Serilog.Core;
using Serilog.Events;
using Serilog.Formatting.Display;

namespace Poold.Hosting;

/// <summary>
/// Builds the root Serilog logger from pgpool-II's logging settings: <c>log_min_messages</c> (or <c>-d</c>) sets the
/// level, stderr is always written, <c>logging_collector = on</c> adds a file in <c>log_directory</c>. Components get
/// their logger from the host (<c>ForContext</c>), never from the static <c>Log</c>.
/// </summary>
internal static class Logging
{
    private const string Template =
        "{Timestamp:yyyy-MM-dd HH:mm:ss.fff}: poold pid {ProcessId}: {Level:u}: {SessionPrefix}{Message:lj}{NewLine}{Exception}";

    public static Logger Create(PooldSettings settings, bool debug, TextWriter? stderr = null)
    {
        var config = new LoggerConfiguration()
            .MinimumLevel.Is(debug ? LogEventLevel.Debug : Level(settings.Get(Params.LogMinMessages)))
            .Enrich.With(new SessionPrefixEnricher())
            .Enrich.WithProperty("ProcessId", Environment.ProcessId)
            .WriteTo.Async(a => a.Sink(new WriterSink(stderr ?? Console.Error)), bufferSize: 10_000);
        if (settings.Get(Params.LoggingCollector))
        {
            var file = Path.Combine(settings.ResolvePath(settings.Get(Params.LogDirectory)),
                Strftime(settings.Get(Params.LogFilename), DateTime.Now));
            config = config.WriteTo.Async(a => a.File(file, outputTemplate: Template, formatProvider: null));
        }

        return config.CreateLogger();
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
    private sealed class WriterSink(TextWriter writer) : ILogEventSink
    {
        private readonly MessageTemplateTextFormatter _formatter = new(Template, System.Globalization.CultureInfo.InvariantCulture);
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
