using System.Text.RegularExpressions;
using Poold.Config;

namespace Poold.Routing;

/// <summary>The routing settings, compiled once per settings generation.</summary>
internal sealed class RoutingOptions
{
    public bool LoadBalanceMode { get; init; } = true;

    public bool AllowSqlComments { get; init; }

    public bool IgnoreLeadingWhiteSpace { get; init; } = true;

    /// <summary>Honour <c>/*NO LOAD BALANCE*/</c> wherever it is, whatever <c>allow_sql_comments</c> says.</summary>
    public bool NoLoadBalanceHint { get; init; } = true;

    public IReadOnlyList<Regex> PrimaryRoutingPatterns { get; init; } = [];

    public IReadOnlyList<Regex> WriteFunctions { get; init; } = [];

    public IReadOnlyList<Regex> ReadOnlyFunctions { get; init; } = [];

    public LoadBalanceOnWrite OnWrite { get; init; } = LoadBalanceOnWrite.Transaction;

    /// <summary>dml_adaptive_object_relationship_list: a written object → the objects that depend on it.</summary>
    public IReadOnlyDictionary<string, IReadOnlyList<string>> DmlRelationships { get; init; } = new Dictionary<string, IReadOnlyList<string>>();

    public bool StatementLevel { get; init; }

    public CheckTempTable TempTableCheck { get; init; } = CheckTempTable.Catalog;

    /// <summary>read_your_writes = session: the router notes when a session's change of data becomes durable.</summary>
    public bool ReadYourWrites { get; init; }

    public static RoutingOptions Default { get; } = new();

    public static RoutingOptions From(PooldSettings settings) => new()
    {
        LoadBalanceMode = settings.Get(Params.LoadBalanceMode),
        AllowSqlComments = settings.Get(Params.AllowSqlComments),
        IgnoreLeadingWhiteSpace = settings.Get(Params.IgnoreLeadingWhiteSpace),
        PrimaryRoutingPatterns = Compile(settings.Get(Params.PrimaryRoutingQueryPatternList)),
        WriteFunctions = Compile(settings.Get(Params.WriteFunctionList)),
        ReadOnlyFunctions = Compile(settings.Get(Params.ReadOnlyFunctionList)),
        OnWrite = settings.Get(Params.DisableLoadBalanceOnWrite),
        DmlRelationships = Relationships(settings.Get(Params.DmlAdaptiveObjectRelationshipList)),
        StatementLevel = settings.Get(Params.StatementLevelLoadBalance),
        TempTableCheck = settings.Get(Params.CheckTempTableMode),
        ReadYourWrites = settings.Get(Params.ReadYourWrites) == ReadYourWritesMode.Session,
    };

    /// <summary>pgpool's pattern rules: POSIX extended, case-insensitive, anchored unless the pattern anchors itself.</summary>
    public static IReadOnlyList<Regex> Compile(IEnumerable<string> patterns) =>
    [
        .. patterns.Where(p => p.Length > 0).Select(p => new Regex((p.StartsWith('^') ? "" : "^") + p + (p.EndsWith('$') ? "" : "$"),
            RegexOptions.IgnoreCase | RegexOptions.CultureInvariant | RegexOptions.Singleline, TimeSpan.FromMilliseconds(100))),
    ];

    private static Dictionary<string, IReadOnlyList<string>> Relationships(IEnumerable<string> entries)
    {
        var map = new Dictionary<string, List<string>>(StringComparer.OrdinalIgnoreCase);
        foreach (var entry in entries)
        {
            var colon = entry.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0)
            {
                continue;
            }

            var (from, to) = (QueryClassifier.FoldIdentifier(entry[..colon].Trim()), QueryClassifier.FoldIdentifier(entry[(colon + 1)..].Trim()));
            if (!map.TryGetValue(from, out var list))
            {
                map[from] = list = [];
            }

            list.Add(to);
        }

        return map.ToDictionary(kv => kv.Key, kv => (IReadOnlyList<string>)kv.Value, StringComparer.OrdinalIgnoreCase);
    }
}
