using System.Collections.Frozen;
using System.Collections.Immutable;
using System.Text.RegularExpressions;

namespace Poold.Config;

/// <summary>
/// Turns parsed entries into <see cref="PooldSettings"/>: looks each name up (with its node suffix), reads the
/// value, then checks the settings as a whole. Every problem is collected with its <c>file:line</c>; settings are
/// returned only when there is no error. Unknown names are warnings, so a real pgpool.conf loads.
/// </summary>
internal static class SettingsBuilder
{
    public readonly record struct Result(PooldSettings? Settings, IReadOnlyList<ConfigDiagnostic> Diagnostics);

    public static Result Build(IReadOnlyList<ConfEntry> entries, string? configFile)
    {
        var diagnostics = new List<ConfigDiagnostic>();
        var values = Params.All.Select(p => p.DefaultValue).ToArray();
        var nodeValues = new Dictionary<(int, int), object>();
        var sources = new Dictionary<(int Parameter, int Node), ConfEntry>();

        foreach (var entry in entries)
        {
            if (!TryResolve(entry, diagnostics, out var parameter, out var node))
            {
                continue;
            }

            var error = parameter.TryParse(entry.Value, out var value);
            if (error is not null)
            {
                var name = node < 0 ? parameter.Name : parameter.Name + node;
                diagnostics.Add(ConfigDiagnostic.Error(entry.File, entry.Line, $"invalid value for parameter \"{name}\": {error}"));
                continue;
            }

            if (node < 0)
            {
                values[parameter.Index] = value;
            }
            else
            {
                nodeValues[(parameter.Index, node)] = value;
            }

            sources[(parameter.Index, node)] = entry;
        }

        var backends = BuildBackends(nodeValues, sources, diagnostics);
        var explicitlySet = sources.Keys.Where(k => k.Node < 0).Select(k => k.Parameter).ToFrozenSet();
        var settings = new PooldSettings(values, nodeValues.ToFrozenDictionary(), explicitlySet, backends, configFile);
        Validate(settings, sources, configFile ?? "(defaults)", diagnostics);

        return new Result(diagnostics.Any(d => d.Severity == DiagnosticSeverity.Error) ? null : settings, diagnostics);
    }

    /// <summary>Finds the parameter an entry names; <paramref name="node"/> is its suffix, or -1 for the plain form.</summary>
    private static bool TryResolve(ConfEntry entry, List<ConfigDiagnostic> diagnostics, out Parameter parameter, out int node)
    {
        node = -1;
        if (Params.ByName.TryGetValue(entry.Name, out parameter!))
        {
            if (parameter.Scope != NodeScope.PerNode)
            {
                return true;
            }

            diagnostics.Add(ConfigDiagnostic.Error(entry.File, entry.Line,
                $"parameter \"{entry.Name}\" needs a node number, e.g. \"{entry.Name}0\""));
            return false;
        }

        var digits = entry.Name.Length;
        while (digits > 0 && char.IsAsciiDigit(entry.Name[digits - 1]))
        {
            digits--;
        }

        var baseName = entry.Name[..digits];
        if (digits < entry.Name.Length && digits > 0)
        {
            if (Params.ByName.TryGetValue(baseName, out parameter!) && parameter.Scope != NodeScope.Global)
            {
                if (!int.TryParse(entry.Name.AsSpan(digits), out node) || node > Params.MaxNodeId)
                {
                    diagnostics.Add(ConfigDiagnostic.Error(entry.File, entry.Line,
                        $"invalid node number in \"{entry.Name}\": nodes are numbered 0 to {Params.MaxNodeId}"));
                    return false;
                }

                return true;
            }

            if (Params.IgnoredNodeFamilies.Contains(baseName))
            {
                return false;
            }
        }

        if (!Params.Ignored.Contains(entry.Name))
        {
            diagnostics.Add(ConfigDiagnostic.Warning(entry.File, entry.Line, $"unrecognized configuration parameter \"{entry.Name}\" (ignored)"));
        }

        return false;
    }

    private static ImmutableArray<BackendSettings> BuildBackends(Dictionary<(int, int), object> nodeValues,
        Dictionary<(int Parameter, int Node), ConfEntry> sources, List<ConfigDiagnostic> diagnostics)
    {
        var configured = new SortedSet<int>();
        var mentioned = new SortedDictionary<int, ConfEntry>();
        foreach (var ((parameter, node), entry) in sources)
        {
            if (node < 0 || Params.All[parameter].Scope != NodeScope.PerNode)
            {
                continue;
            }

            if (parameter == Params.BackendPort.Index)
            {
                configured.Add(node);
            }
            else if (!mentioned.TryGetValue(node, out var first) || entry.Line < first.Line)
            {
                mentioned[node] = entry;
            }
        }

        foreach (var (node, entry) in mentioned)
        {
            if (!configured.Contains(node))
            {
                diagnostics.Add(ConfigDiagnostic.Warning(entry.File, entry.Line,
                    $"backend node {node} has settings but no backend_port{node}: the node is unused"));
            }
        }

        if (configured.Count == 0)
        {
            return [];
        }

        T Value<T>(Parameter<T> p, int node)
            where T : notnull => nodeValues.TryGetValue((p.Index, node), out var v) ? (T)v : p.Default;

        var slots = new BackendSettings[configured.Max + 1];
        for (var id = 0; id < slots.Length; id++)
        {
            slots[id] = new BackendSettings(id, configured.Contains(id), Value(Params.BackendHostname, id), Value(Params.BackendPort, id),
                Value(Params.BackendWeight, id), Value(Params.BackendDataDirectory, id), Value(Params.BackendFlag, id),
                Value(Params.BackendApplicationName, id))
            {
                TlsMode = Value(Params.BackendSslMode, id),
                SslCaCert = Value(Params.BackendSslCaCert, id),
                RequireAuth = Value(Params.BackendRequireAuth, id),
            };
        }

        var total = slots.Where(b => b.IsConfigured).Sum(b => b.Weight);
        return [.. slots.Select(b => b with { NormalizedWeight = b.IsConfigured && total > 0 ? b.Weight / total : 0 })];
    }

    /// <summary>Checks that need more than one value.</summary>
    private static void Validate(PooldSettings s, Dictionary<(int Parameter, int Node), ConfEntry> sources, string file,
        List<ConfigDiagnostic> diagnostics)
    {
        void Report(DiagnosticSeverity severity, Parameter p, string message)
        {
            var at = sources.TryGetValue((p.Index, -1), out var e) ? e : new ConfEntry(p.Name, "", false, file, 0);
            diagnostics.Add(new ConfigDiagnostic(severity, at.File, at.Line, message));
        }

        var mode = s.Get(Params.BackendClusteringMode);
        if (mode != ClusteringMode.StreamingReplication)
        {
            Report(DiagnosticSeverity.Error, Params.BackendClusteringMode,
                $"backend_clustering_mode = '{Params.BackendClusteringMode.Show(mode)}' is not supported: Poold runs streaming_replication only");
        }

        if (s.Get(Params.UseWatchdog))
        {
            Report(DiagnosticSeverity.Warning, Params.UseWatchdog, "use_watchdog = on has no effect: Poold has no watchdog");
        }

        if (s.Get(Params.MemoryCacheEnabled))
        {
            Report(DiagnosticSeverity.Warning, Params.MemoryCacheEnabled, "memory_cache_enabled = on has no effect: Poold has no query cache");
        }

        if (s.Get(Params.ReadOnlyFunctionList).Count > 0 && s.Get(Params.WriteFunctionList).Count > 0)
        {
            Report(DiagnosticSeverity.Error, Params.WriteFunctionList,
                "read_only_function_list and write_function_list cannot both be set: use one of them");
        }

        foreach (var list in (Parameter<IReadOnlyList<string>>[])[Params.ReadOnlyFunctionList, Params.WriteFunctionList,
                     Params.PrimaryRoutingQueryPatternList])
        {
            foreach (var pattern in s.Get(list))
            {
                try
                {
                    _ = new Regex(pattern, RegexOptions.CultureInvariant);
                }
                catch (ArgumentException e)
                {
                    Report(DiagnosticSeverity.Error, list, $"invalid regular expression \"{pattern}\" in {list.Name}: {e.Message}");
                }
            }
        }

        if (s.Get(Params.ReservedConnections) >= s.Get(Params.NumInitChildren))
        {
            Report(DiagnosticSeverity.Error, Params.ReservedConnections,
                $"reserved_connections ({s.Get(Params.ReservedConnections)}) must be less than num_init_children ({s.Get(Params.NumInitChildren)})");
        }

        var (min, max) = (s.Get(Params.SslMinProtocolVersion), s.Get(Params.SslMaxProtocolVersion));
        if (max != TlsVersion.Any && max < min)
        {
            Report(DiagnosticSeverity.Error, Params.SslMaxProtocolVersion,
                $"ssl_max_protocol_version ({Params.SslMaxProtocolVersion.Show(max)}) is lower than ssl_min_protocol_version ({Params.SslMinProtocolVersion.Show(min)})");
        }

        if (s.Get(Params.BackendDiscoveryMode) == BackendDiscovery.Patroni)
        {
            if (s.Get(Params.PatroniUrls).Count == 0)
            {
                Report(DiagnosticSeverity.Error, Params.BackendDiscoveryMode, "backend_discovery = 'patroni' needs patroni_urls (http://host:8008,...)");
            }

            foreach (var url in s.Get(Params.PatroniUrls))
            {
                if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
                {
                    Report(DiagnosticSeverity.Error, Params.PatroniUrls, $"patroni_urls: \"{url}\" is not an http:// or https:// URL");
                }
            }
        }

        foreach (var entry in s.Get(Params.PoolModeDatabaseList))
        {
            if (!PoolModes.TryParse(entry, out _, out _))
            {
                Report(DiagnosticSeverity.Error, Params.PoolModeDatabaseList,
                    $"pool_mode_database_list: \"{entry}\" is not database:session or database:transaction");
            }
        }

        foreach (var peer in s.Get(Params.Peers))
        {
            if (CancelPeer.TryParse(peer) is not { } parsed)
            {
                Report(DiagnosticSeverity.Error, Params.Peers, $"peers: \"{peer}\" is not id:host:port (id 1 to 255)");
            }
            else if (parsed.Id == s.Get(Params.PeerId))
            {
                Report(DiagnosticSeverity.Error, Params.Peers, $"peers: \"{peer}\" has this instance's own peer_id ({parsed.Id})");
            }
        }

        if (s.Get(Params.Peers).Count > 0 && s.Get(Params.PeerId) == 0)
        {
            Report(DiagnosticSeverity.Error, Params.Peers, "peers needs peer_id (1 to 255) for this instance");
        }

        if (s.Get(Params.Ssl) && (s.Get(Params.SslCert).Length == 0 || s.Get(Params.SslKey).Length == 0))
        {
            Report(DiagnosticSeverity.Error, Params.Ssl, "ssl = on needs ssl_cert and ssl_key (PEM files)");
        }

        foreach (var b in s.Backends)
        {
            if (b.IsConfigured && b.TlsMode is BackendTlsMode.VerifyCa or BackendTlsMode.VerifyFull && b.SslCaCert.Length == 0)
            {
                var at = sources.TryGetValue((Params.BackendSslMode.Index, b.Id), out var e) ? e : new ConfEntry("", "", false, file, 0);
                diagnostics.Add(ConfigDiagnostic.Error(at.File, at.Line,
                    $"backend_sslmode{b.Id} = '{Params.BackendSslMode.Show(b.TlsMode)}' needs backend_ssl_ca_cert{b.Id}: a PEM file of the CA(s) to trust, or 'system'"));
            }
        }

        if (s.Backends.Length > 0 && s.Backends.Where(b => b.IsConfigured).All(b => b.Weight == 0))
        {
            diagnostics.Add(ConfigDiagnostic.Warning(file, 0,
                "every backend_weight is 0 (the default when omitted): no replica receives load-balanced reads"));
        }
    }
}
