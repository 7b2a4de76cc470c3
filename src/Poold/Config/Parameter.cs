using System.Globalization;

namespace Poold.Config;

/// <summary>When a changed value takes effect, as pgpool-II classifies its parameters.</summary>
internal enum ParameterContext
{
    /// <summary>Read at start only; a reload keeps the old value and says so.</summary>
    Start,

    /// <summary>Re-read on reload (SIGHUP, <c>poold reload</c>, <c>pcp_reload_config</c>).</summary>
    Reload,

    /// <summary>Reloadable, and settable per session with <c>PGPOOL SET</c>.</summary>
    Session,
}

/// <summary>Whether a parameter takes a node-number suffix (<c>backend_port0</c>, <c>health_check_period1</c>).</summary>
internal enum NodeScope
{
    Global,

    /// <summary>Only the suffixed form exists (<c>backend_hostnameN</c>).</summary>
    PerNode,

    /// <summary>The plain form is the default for every node; <c>nameN</c> overrides it for node N.</summary>
    GlobalWithNodeOverride,
}

/// <summary>A pgpool.conf parameter: name, default, how to read its value and how to show it.</summary>
internal abstract class Parameter(string name, ParameterContext context, string description, NodeScope scope, string[] aliases)
{
    public string Name { get; } = name;

    public ParameterContext Context { get; } = context;

    /// <summary>The one-line description pgpool-II shows in <c>pcp_pool_status</c> and <c>PGPOOL SHOW</c>.</summary>
    public string Description { get; } = description;

    public NodeScope Scope { get; } = scope;

    /// <summary>Other spellings: older or newer pgpool-II names for the same setting.</summary>
    public IReadOnlyList<string> Aliases { get; } = aliases;

    /// <summary>Position in <see cref="Params.All"/>; settings keep values in an array indexed by it.</summary>
    public int Index { get; set; } = -1;

    public abstract object DefaultValue { get; }

    /// <summary>Reads a value; returns null on success, else what is wrong with it.</summary>
    public abstract string? TryParse(string text, out object value);

    /// <summary>The value as pgpool-II shows it (booleans on/off, times in the base unit, lists comma-joined).</summary>
    public abstract string Show(object value);

    public override string ToString() => Name;
}

internal sealed class Parameter<T>(
    string name,
    T defaultValue,
    ValueParser<T> parser,
    Func<T, string> show,
    ParameterContext context,
    string description,
    NodeScope scope = NodeScope.Global,
    string[]? aliases = null)
    : Parameter(name, context, description, scope, aliases ?? [])
    where T : notnull
{
    public T Default { get; } = defaultValue;

    public override object DefaultValue => Default;

    public override string? TryParse(string text, out object value)
    {
        var error = parser(text, out var typed);
        value = typed;
        return error;
    }

    public override string Show(object value) => show((T)value);
}

/// <summary>Factories for the parameter kinds pgpool.conf has.</summary>
internal static class ParameterKinds
{
    public static Parameter<bool> Bool(string name, bool @default, ParameterContext context, string description,
        NodeScope scope = NodeScope.Global, string[]? aliases = null) =>
        new(name, @default, ValueParsers.Bool, v => v ? "on" : "off", context, description, scope, aliases);

    public static Parameter<int> Int(string name, int @default, int min, int max, ParameterContext context, string description,
        NodeScope scope = NodeScope.Global, string[]? aliases = null) =>
        new(name, @default, (string text, out int value) =>
        {
            var error = ValueParsers.Integer(text, UnitKind.None, min, max, out var v);
            value = (int)v;
            return error;
        }, v => v.ToString(CultureInfo.InvariantCulture), context, description, scope, aliases);

    /// <summary>A byte count; accepts B, kB, MB, GB, TB.</summary>
    public static Parameter<long> Bytes(string name, long @default, ParameterContext context, string description) =>
        new(name, @default, (string text, out long value) => ValueParsers.Integer(text, UnitKind.Bytes, 0, long.MaxValue, out value),
            v => v.ToString(CultureInfo.InvariantCulture), context, description);

    /// <summary>A duration written in <paramref name="baseUnit"/> when no unit is given; accepts us, ms, s, min, h, d.</summary>
    public static Parameter<TimeSpan> Time(string name, TimeSpan @default, UnitKind baseUnit, ParameterContext context, string description,
        NodeScope scope = NodeScope.Global, string[]? aliases = null)
    {
        var ticksPerUnit = baseUnit switch
        {
            UnitKind.Microseconds => TimeSpan.TicksPerMicrosecond,
            UnitKind.Milliseconds => TimeSpan.TicksPerMillisecond,
            UnitKind.Seconds => TimeSpan.TicksPerSecond,
            UnitKind.Minutes => TimeSpan.TicksPerMinute,
            _ => throw new ArgumentOutOfRangeException(nameof(baseUnit)),
        };
        var max = int.MaxValue;
        return new(name, @default, (string text, out TimeSpan value) =>
        {
            var error = ValueParsers.Integer(text, baseUnit, 0, max, out var v);
            value = TimeSpan.FromTicks(v * ticksPerUnit);
            return error;
        }, v => (v.Ticks / ticksPerUnit).ToString(CultureInfo.InvariantCulture), context, description, scope, aliases);
    }

    public static Parameter<double> Real(string name, double @default, double min, double max, ParameterContext context, string description,
        NodeScope scope = NodeScope.Global) =>
        new(name, @default, (string text, out double value) => ValueParsers.Real(text, min, max, out value),
            v => v.ToString("0.######", CultureInfo.InvariantCulture), context, description, scope);

    public static Parameter<string> String(string name, string @default, ParameterContext context, string description,
        NodeScope scope = NodeScope.Global, string[]? aliases = null) =>
        new(name, @default, (string text, out string value) =>
        {
            value = text;
            return null;
        }, v => v, context, description, scope, aliases);

    /// <summary>A list split on <paramref name="separator"/>; items are trimmed and empty items dropped.</summary>
    public static Parameter<IReadOnlyList<string>> List(string name, string @default, char separator, ParameterContext context,
        string description, string[]? aliases = null) =>
        new(name, ValueParsers.List(@default, separator), (string text, out IReadOnlyList<string> value) =>
        {
            value = ValueParsers.List(text, separator);
            return null;
        }, v => string.Join(separator, v), context, description, NodeScope.Global, aliases);

    /// <summary>One of a fixed set of words (any case); synonyms map to the same value.</summary>
    public static Parameter<TEnum> Enum<TEnum>(string name, TEnum @default, (string Word, TEnum Value)[] words, ParameterContext context,
        string description, string[]? aliases = null, NodeScope scope = NodeScope.Global)
        where TEnum : struct, Enum =>
        new(name, @default, (string text, out TEnum value) =>
        {
            foreach (var (word, v) in words)
            {
                if (word.Equals(text.Trim(), StringComparison.OrdinalIgnoreCase))
                {
                    value = v;
                    return null;
                }
            }

            value = @default;
            return $"invalid value \"{text}\"; expected one of: {string.Join(", ", words.Select(w => w.Word))}";
        }, v => words.First(w => EqualityComparer<TEnum>.Default.Equals(w.Value, v)).Word, context, description, scope, aliases);
}
