using System.Globalization;
using Poold.Backends;

namespace Poold.Routing;

/// <summary>
/// <c>read_your_writes = session</c>, the decision alone (no I/O): once a session has written, a read that the balancer
/// sends to a standby stays there only when that standby has replayed the session's LSN (a position at or after the
/// end of its last acknowledged write); otherwise it goes to another standby that has, drawn by weight, or to the
/// primary. Sessions that have not written (LSN 0) keep their load-balance node.
/// </summary>
internal static class ReadYourWrites
{
    /// <summary>A standby a read may go to: its weight and the newest replay position known for it (0 when unknown).</summary>
    public readonly record struct Standby(int NodeId, double Weight, ulong ReplayLsn);

    /// <summary>
    /// Where a read of a session whose writes reach <paramref name="sessionLsn"/> goes, given the node the balancer chose
    /// and what is known of the standbys' replay positions. Reason is null when the chosen node stands (it has replayed the
    /// LSN, it is the primary, or the session has not written); else it starts with <see cref="RouteRules.StandbyBehind"/>.
    /// </summary>
    public static (int NodeId, string? Reason) Choose(ulong sessionLsn, int balanceNode, int primary, ReadOnlySpan<Standby> standbys, Random random)
    {
        if (sessionLsn == 0 || balanceNode == primary)
        {
            return (balanceNode, null);
        }

        ulong balanceReplay = 0;
        double total = 0;
        foreach (var s in standbys)
        {
            if (s.NodeId == balanceNode)
            {
                balanceReplay = s.ReplayLsn;
            }

            if (s.ReplayLsn >= sessionLsn && s.Weight > 0)
            {
                total += s.Weight;
            }
        }

        if (balanceReplay >= sessionLsn)
        {
            return (balanceNode, null);
        }

        var behind = $"{RouteRules.StandbyBehind}: node {I(balanceNode)} has replayed {Lsn(balanceReplay)}, the session wrote up to {Lsn(sessionLsn)}";
        if (total > 0)
        {
            var pick = random.NextDouble() * total;
            var chosen = -1;
            foreach (var s in standbys)
            {
                if (s.ReplayLsn >= sessionLsn && s.Weight > 0)
                {
                    chosen = s.NodeId;
                    pick -= s.Weight;
                    if (pick < 0)
                    {
                        break;
                    }
                }
            }

            return (chosen, $"{behind}: node {I(chosen)} has, by weight");
        }

        return (primary, $"{behind}: no standby has: the primary");
    }

    /// <summary>The standbys a read may go to (up, weight above 0, not lagging past delay_threshold), with their known replay positions.</summary>
    public static Standby[] Standbys(NodeSnapshot nodes, Func<int, ulong> replayLsn)
    {
        var list = new List<Standby>(nodes.Nodes.Length);
        foreach (var node in nodes.Nodes)
        {
            if (LoadBalancer.IsReadStandby(node, nodes))
            {
                list.Add(new Standby(node.Id, node.Settings.Weight, replayLsn(node.Id)));
            }
        }

        return [.. list];
    }

    /// <summary>
    /// The end of what was written before <paramref name="insertLsn"/>, a primary's <c>pg_current_wal_insert_lsn()</c>, as a
    /// standby's <c>pg_last_wal_replay_lsn()</c> would show it once replayed. They differ when the last record ended exactly
    /// at a WAL page boundary: the insert position then points past the next page's header (24 bytes, 40 on a segment's
    /// first page) while the standby stops at the boundary until another record comes, which on a quiet primary may be
    /// never. Moving such a position back to the boundary is exact: no record can end inside a page header, and none can
    /// end at a page offset of 40 on any page (a record is at least 24 bytes, so only a record that crossed the boundary
    /// can end there, and then none ended at the boundary either).
    /// </summary>
    public static ulong EndOfWrites(ulong insertLsn, int walBlockSize)
    {
        if (walBlockSize <= 0 || (walBlockSize & (walBlockSize - 1)) != 0)
        {
            return insertLsn;
        }

        var offset = insertLsn & (ulong)(walBlockSize - 1);
        return offset is ShortPageHeader or LongPageHeader ? insertLsn - offset : insertLsn;
    }

    /// <summary>A WAL page header's size, MAXALIGNed as PostgreSQL lays it out: the short one, and the long one of a segment's first page.</summary>
    private const ulong ShortPageHeader = 24, LongPageHeader = 40;

    /// <summary>A WAL position as PostgreSQL prints it (X/Y).</summary>
    public static string Lsn(ulong lsn) => string.Create(CultureInfo.InvariantCulture, $"{lsn >> 32:X}/{lsn & 0xFFFF_FFFF:X}");

    private static string I(int value) => value.ToString(CultureInfo.InvariantCulture);
}
