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
/// <para>
/// The root logger that components hold never changes; what it writes to does. Its level is a switch and its
/// destinations one <see cref="LogPipeline"/> sink, so <see cref="Reconfigure"/> (on reload) swaps in a pipeline built
/// from the new settings and flushes the old one, and every logger already handed out follows. The collector's file is
/// opened once (logging_collector, log_directory and log_filename are start-only, as in pgpool-II) and takes the
/// current format.
/// </para>
/// </summary>
internal static class Logging
{
    private const string Body = "{Level:u}: {SessionPrefix}{Message:lj}{NewLine}{Exception}";

    /// <summary>The pipeline behind each root logger made here, for <see cref="Reconfigure"/>.</summary>
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<ILogger, LogPipeline> Pipelines = new();

    public static Logger Create(PooldSettings settings, bool debug, TextWriter? stderr = null)
    {
        var pipeline = new LogPipeline(stderr ?? Console.Error, debug);
        pipeline.Apply(settings);
        var config = new LoggerConfiguration()
            .MinimumLevel.ControlledBy(pipeline.Level)
            .Enrich.WithProperty("ProcessId", Environment.ProcessId)
            .Enrich.With(new SessionPrefixEnricher(pipeline))
            .WriteTo.Sink(pipeline);
        if (settings.Get(Params.LoggingCollector))
        {
            var file = Path.Combine(settings.ResolvePath(settings.Get(Params.LogDirectory)),
                Strftime(settings.Get(Params.LogFilename), DateTime.Now));
            config = config.WriteTo.Async(a => a.File(new CurrentFormatter(pipeline), file));
        }

        var logger = config.CreateLogger();
        Pipelines.Add(logger, pipeline);
        return logger;
    }

    /// <summary>
    /// Reload: the level, destinations, syslog facility/ident/socket, format and line prefix of <paramref name="root"/>
    /// (a logger made by <see cref="Create"/>; any other is left alone) now come from <paramref name="settings"/>.
    /// Events written during the swap go to the old destinations (flushed) or the new ones; none is lost.
    /// </summary>
    public static void Reconfigure(ILogger root, PooldSettings settings)
    {
        if (Pipelines.TryGetValue(root, out var pipeline))
        {
            pipeline.Apply(settings);
        }
    }

    /// <summary>The swappable part of a root logger: the stderr and syslog sinks, and the formatter the file sink uses.</summary>
    private sealed class LogPipeline(TextWriter stderr, bool debug) : ILogEventSink, IDisposable
    {
        private readonly Lock _applying = new();
        private State? _state;

        /// <summary>The destinations and format in force, built together so an event never sees half of a reload.</summary>
        private sealed class State(Logger sinks, ITextFormatter formatter, bool json)
        {
            /// <summary>Events being handed to <see cref="Sinks"/> right now; the old state is closed when this is 0.</summary>
            private int _writers;

            public Logger Sinks { get; } = sinks;

            public ITextFormatter Formatter { get; } = formatter;

            public bool Json { get; } = json;

            public bool Idle => Volatile.Read(ref _writers) == 0;

            public void Enter() => Interlocked.Increment(ref _writers);

            public void Exit() => Interlocked.Decrement(ref _writers);
        }

        public LoggingLevelSwitch Level { get; } = new();

        public bool Json => Volatile.Read(ref _state)?.Json ?? false;

        public ITextFormatter Formatter => Volatile.Read(ref _state)!.Formatter;

        public void Apply(PooldSettings settings)
        {
            lock (_applying)
            {
                Swap(settings);
            }
        }

        private void Swap(PooldSettings settings)
        {
            var json = settings.Get(Params.LogFormatting) == LogFormat.Json;
            var prefix = settings.Get(Params.LogLinePrefix);
            ITextFormatter Formatter() => json ? new RenderedCompactJsonFormatter() : new TextFormatter(new LinePrefix(prefix));
            // The root logger filters by level and enriches; this one only fans the events out.
            var config = new LoggerConfiguration().MinimumLevel.Verbose();
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
                var syslog = new SyslogSink(settings.Get(Params.SyslogSocket), (int)settings.Get(Params.SyslogFacilityParam),
                    settings.Get(Params.SyslogIdent), Formatter());
                config = config.WriteTo.Async(a => a.Sink(syslog), bufferSize: 10_000);
            }

            Level.MinimumLevel = debug ? LogEventLevel.Debug : Logging.Level(settings.Get(Params.LogMinMessages));
            var old = Interlocked.Exchange(ref _state, new State(config.CreateLogger(), Formatter(), json));
            if (old is not null)
            {
                // An event that took the old state before the swap finishes its hand-off first; closing then flushes
                // what the old destinations still queue. Nothing is lost and nothing written twice.
                var wait = new SpinWait();
                while (!old.Idle)
                {
                    wait.SpinOnce();
                }

                old.Sinks.Dispose();
            }
        }

        public void Emit(LogEvent logEvent)
        {
            while (true)
            {
                var state = Volatile.Read(ref _state)!;
                state.Enter();
                try
                {
                    if (ReferenceEquals(state, Volatile.Read(ref _state)))
                    {
                        state.Sinks.Write(logEvent);
                        return;
                    }
                }
                finally
                {
                    state.Exit();
                }
            }
        }

        public void Dispose() => Volatile.Read(ref _state)?.Sinks.Dispose();
    }

    /// <summary>The collector file's formatter: whatever format the pipeline has now.</summary>
    private sealed class CurrentFormatter(LogPipeline pipeline) : ITextFormatter
    {
        public void Format(LogEvent logEvent, TextWriter output) => pipeline.Formatter.Format(logEvent, output);
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

    /// <summary>Renders "session N: " before the message of events that carry a SessionId (text format only).</summary>
    private sealed class SessionPrefixEnricher(LogPipeline pipeline) : ILogEventEnricher
    {
        public void Enrich(LogEvent logEvent, ILogEventPropertyFactory propertyFactory)
        {
            if (pipeline.Json)
            {
                return;
            }

            var prefix = logEvent.Properties.TryGetValue("SessionId", out var id) ? $"session {id}: " : "";
            logEvent.AddPropertyIfAbsent(propertyFactory.CreateProperty("SessionPrefix", prefix));
        }
    }
}
