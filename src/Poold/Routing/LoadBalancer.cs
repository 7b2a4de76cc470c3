using System.Globalization;
using System.Text.RegularExpressions;
using Poold.Backends;
using Poold.Config;

namespace Poold.Routing;

/// <summary>
/// Chooses a session's load-balance node as pgpool-II does (compat §6.1): among nodes that are up, by
/// <c>backend_weightN</c> (the primary takes part when its weight is above 0; when every weight is 0, the primary),
/// after <c>app_name_redirect_preference_list</c> (first, and when it matches the database list is not consulted) and
/// <c>database_redirect_preference_list</c>, whose entries are <c>regex:target[(ratio)]</c> with target a node id,
/// <c>primary</c> or <c>standby</c>.
/// </summary>
internal sealed class LoadBalancer
{
    private readonly IReadOnlyList<Redirect> _byApplication;
    private readonly IReadOnlyList<Redirect> _byDatabase;

    /// <summary>The balancer of the last settings asked for (they are immutable; a reload makes new ones).</summary>
    private static LoadBalancer? s_last;

    private readonly PooldSettings _settings;

    /// <summary>
    /// The balancer for <paramref name="settings"/>: one shared by every session under them (it holds no session state),
    /// rather than one per session with its redirect lists parsed again at every login.
    /// </summary>
    public static LoadBalancer For(PooldSettings settings)
    {
        var last = Volatile.Read(ref s_last);
        if (last is not null && ReferenceEquals(last._settings, settings))
        {
            return last;
        }

        last = new LoadBalancer(settings);
        Volatile.Write(ref s_last, last);
        return last;
    }

    public LoadBalancer(PooldSettings settings)
    {
        _settings = settings;
        _byApplication = Redirect.ParseList(settings.Get(Params.AppNameRedirectPreferenceList));
        _byDatabase = Redirect.ParseList(settings.Get(Params.DatabaseRedirectPreferenceList));
        Enabled = settings.Get(Params.LoadBalanceMode);
    }

    public bool Enabled { get; }

    /// <summary>The node for this session's reads, with why.</summary>
    public (int NodeId, string Reason) Choose(NodeSnapshot nodes, string database, string? applicationName, Random random)
    {
        var primary = nodes.PrimaryNodeId;
        if (!Enabled)
        {
            return (primary, "load_balance_mode = off");
        }

        var redirect = (applicationName is not null ? Redirect.Find(_byApplication, applicationName) : null) ?? Redirect.Find(_byDatabase, database);
        if (redirect is not null)
        {
            var target = redirect.Resolve(nodes, random);
            if (target is { } chosen && random.NextDouble() < redirect.Ratio)
            {
                return (chosen, $"redirect preference {redirect}");
            }

            // Not taken (ratio) or target down: a standby target falls back to the primary, a node to the others by weight.
            if (redirect.Target == "standby")
            {
                return (primary, $"redirect preference {redirect} not taken: primary");
            }

            if (ByWeight(nodes, random, exclude: target) is { } other)
            {
                return (other, $"redirect preference {redirect} not taken: by weight among the others");
            }
        }

        return ByWeight(nodes, random, exclude: null) is { } node ? (node, "by weight") : (primary, "every weight is 0: the primary");
    }

    /// <summary>A live node drawn with probability proportional to its weight; null when the weights sum to 0.</summary>
    public static int? ByWeight(NodeSnapshot nodes, Random random, int? exclude, bool standbysOnly = false)
    {
        double total = 0;
        foreach (var node in nodes.Nodes)
        {
            if (Eligible(node, nodes, exclude, standbysOnly))
            {
                total += node.Settings.Weight;
            }
        }

        if (total <= 0)
        {
            return null;
        }

        var pick = random.NextDouble() * total;
        foreach (var node in nodes.Nodes)
        {
            if (!Eligible(node, nodes, exclude, standbysOnly))
            {
                continue;
            }

            pick -= node.Settings.Weight;
            if (pick < 0)
            {
                return node.Id;
            }
        }

        return nodes.Nodes.Last(n => Eligible(n, nodes, exclude, standbysOnly)).Id;
    }

    /// <summary>A standby that may take load-balanced reads (up, weight above 0, not over delay_threshold).</summary>
    public static bool IsReadStandby(NodeState node, NodeSnapshot nodes) => Eligible(node, nodes, exclude: null, standbysOnly: true);

    private static bool Eligible(NodeState node, NodeSnapshot nodes, int? exclude, bool standbysOnly) =>
        node.Status is NodeStatus.Up or NodeStatus.Waiting && node.Settings.Weight > 0 && !node.NoLoadBalance && node.Id != exclude
        && !node.Replication.Lagging
        && !(standbysOnly && node.Id == nodes.PrimaryNodeId);

    /// <summary>One <c>regex:target[(ratio)]</c> entry.</summary>
    private sealed class Redirect(Regex pattern, string target, double ratio, string text)
    {
        public string Target { get; } = target;

        public double Ratio { get; } = ratio;

        public static List<Redirect> ParseList(IEnumerable<string> entries)
        {
            var list = new List<Redirect>();
            foreach (var entry in entries)
            {
                var colon = entry.LastIndexOf(':');
                if (colon <= 0)
                {
                    continue;
                }

                var target = entry[(colon + 1)..].Trim();
                var ratio = 1.0;
                var open = target.IndexOf('(', StringComparison.Ordinal);
                if (open > 0 && target.EndsWith(')') && double.TryParse(target[(open + 1)..^1], NumberStyles.Float, CultureInfo.InvariantCulture, out var r))
                {
                    ratio = Math.Clamp(r, 0, 1);
                    target = target[..open].Trim();
                }

                list.Add(new Redirect(RoutingOptions.Compile([entry[..colon].Trim()])[0], target.ToLowerInvariant(), ratio, entry));
            }

            return list;
        }

        public static Redirect? Find(IReadOnlyList<Redirect> list, string value) => list.FirstOrDefault(r => r.Matches(value));

        private bool Matches(string value) => pattern.IsMatch(value);

        /// <summary>The target node when it is up; for <c>standby</c>, a standby by weight.</summary>
        public int? Resolve(NodeSnapshot nodes, Random random)
        {
            switch (Target)
            {
                case "primary":
                    return nodes.PrimaryNodeId >= 0 ? nodes.PrimaryNodeId : null;
                case "standby":
                    return ByWeight(nodes, random, exclude: null, standbysOnly: true);
                default:
                    return int.TryParse(Target, NumberStyles.None, CultureInfo.InvariantCulture, out var id) && id < nodes.Nodes.Length
                                                                                                             && nodes.Nodes[id].Status is NodeStatus.Up or NodeStatus.Waiting
                        ? id
                        : null;
            }
        }

        public override string ToString() => text;
    }
}
