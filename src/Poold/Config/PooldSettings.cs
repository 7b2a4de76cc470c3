using System.Collections.Frozen;
using System.Collections.Immutable;

namespace Poold.Config;

/// <summary>
/// The configuration in force: immutable once built. A reload builds a new instance and swaps it in whole; a
/// session keeps the instance it started with. Values are kept in an array indexed by <see cref="Parameter.Index"/>
/// and read through the typed <see cref="Params"/> fields: <c>settings.Get(Params.Port)</c>.
/// </summary>
internal sealed class PooldSettings
{
    private readonly object[] _values;
    private readonly FrozenDictionary<(int Parameter, int Node), object> _nodeValues;
    private readonly FrozenSet<int> _explicit;

    internal PooldSettings(object[] values, FrozenDictionary<(int, int), object> nodeValues, FrozenSet<int> explicitlySet,
        ImmutableArray<BackendSettings> backends, string? configFile)
    {
        _values = values;
        _nodeValues = nodeValues;
        _explicit = explicitlySet;
        Backends = backends;
        ConfigFile = configFile;
        ConfigDirectory = configFile is null ? Directory.GetCurrentDirectory() : Path.GetDirectoryName(Path.GetFullPath(configFile))!;
    }

    /// <summary>pgpool-II's compiled defaults, with no backends.</summary>
    public static PooldSettings Defaults { get; } = SettingsBuilder.Build([], configFile: null).Settings!;

    /// <summary>The file these settings were read from, or null for built-in defaults.</summary>
    public string? ConfigFile { get; }

    /// <summary>Relative paths in the configuration (pool_passwd, include) are resolved against this directory.</summary>
    public string ConfigDirectory { get; }

    /// <summary>Every backend slot from 0 to the highest configured node number.</summary>
    public ImmutableArray<BackendSettings> Backends { get; }

    public T Get<T>(Parameter<T> parameter)
        where T : notnull
    {
        if (parameter.Scope == NodeScope.PerNode)
        {
            throw new ArgumentException($"{parameter.Name} is a per-node parameter; pass the node number", nameof(parameter));
        }

        return (T)_values[parameter.Index];
    }

    /// <summary>The value for node <paramref name="node"/>: its <c>nameN</c> override if set, else the plain value.</summary>
    public T Get<T>(Parameter<T> parameter, int node)
        where T : notnull =>
        _nodeValues.TryGetValue((parameter.Index, node), out var value) ? (T)value : (T)_values[parameter.Index];

    /// <summary>Whether the configuration file set this parameter (its plain form), rather than leaving the default.</summary>
    public bool IsSet(Parameter parameter) => _explicit.Contains(parameter.Index);

    /// <summary>The value as pgpool-II displays it (<c>PGPOOL SHOW</c>, <c>pcp_pool_status</c>).</summary>
    public string Show(Parameter parameter) => parameter.Show(_values[parameter.Index]);

    /// <summary>A per-node value as configuration text (the node's own setting, else the global one).</summary>
    public string Show(Parameter parameter, int node) =>
        parameter.Show(_nodeValues.TryGetValue((parameter.Index, node), out var value) ? value : _values[parameter.Index]);

    /// <summary>A path from the configuration, made absolute against <see cref="ConfigDirectory"/> when relative.</summary>
    public string ResolvePath(string path) => Path.IsPathRooted(path) ? path : Path.GetFullPath(Path.Combine(ConfigDirectory, path));

    /// <summary>
    /// For a reload: these (new) settings, except that every start-only parameter keeps its value from
    /// <paramref name="running"/>. <paramref name="needRestart"/> names the start-only parameters whose value differs.
    /// </summary>
    public PooldSettings KeepStartParameters(PooldSettings running, out IReadOnlyList<string> needRestart)
    {
        var values = (object[])_values.Clone();
        var changed = new List<string>();
        foreach (var p in Params.All)
        {
            if (p.Context != ParameterContext.Start || p.Scope == NodeScope.PerNode)
            {
                continue;
            }

            if (p.Show(values[p.Index]) != p.Show(running._values[p.Index]))
            {
                changed.Add(p.Name);
            }

            values[p.Index] = running._values[p.Index];
        }

        needRestart = changed;
        return new PooldSettings(values, _nodeValues, _explicit, Backends, ConfigFile);
    }

    /// <summary>Reads and validates a pgpool.conf-style file; throws <see cref="ConfigException"/> listing every error.</summary>
    public static (PooldSettings Settings, IReadOnlyList<ConfigDiagnostic> Warnings) Load(string path)
    {
        var entries = new List<ConfEntry>();
        var diagnostics = new List<ConfigDiagnostic>();
        ConfFileReader.Read(path, entries, diagnostics);
        var result = SettingsBuilder.Build(entries, path);
        diagnostics.AddRange(result.Diagnostics);
        var ordered = diagnostics.OrderBy(d => d.File, StringComparer.Ordinal).ThenBy(d => d.Line).ToList();
        if (result.Settings is null || ordered.Any(d => d.Severity == DiagnosticSeverity.Error))
        {
            throw new ConfigException(ordered);
        }

        return (result.Settings, ordered);
    }
}
