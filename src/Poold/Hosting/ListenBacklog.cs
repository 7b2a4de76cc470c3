using Poold.Config;

namespace Poold.Hosting;

/// <summary>
/// The client sockets' listen queue. pgpool-II sizes it num_init_children × listen_backlog_multiplier (64 by default)
/// because each of its children accepts for itself; Poold is one process that accepts as fast as clients arrive, and a
/// short queue drops the SYNs of a burst (clients then hang in retransmission). So: listen_backlog (4096), or the
/// pgpool product when larger, but never above the kernel's net.core.somaxconn, which would silently cut it.
/// </summary>
internal static class ListenBacklog
{
    private const string SomaxconnPath = "/proc/sys/net/core/somaxconn";

    /// <summary>The backlog to ask for, and the kernel cap when it lowered it (null when it did not).</summary>
    public static (int Backlog, int? CappedBy) Choose(PooldSettings settings, int? somaxconn)
    {
        var wanted = Math.Max(settings.Get(Params.ListenBacklog),
            (int)Math.Min(int.MaxValue, (long)settings.Get(Params.NumInitChildren) * settings.Get(Params.ListenBacklogMultiplier)));
        return somaxconn is { } cap && cap > 0 && wanted > cap ? (cap, cap) : (wanted, null);
    }

    /// <summary>net.core.somaxconn, or null where it cannot be read (not Linux).</summary>
    public static int? ReadSomaxconn()
    {
        try
        {
            return int.TryParse(File.ReadAllText(SomaxconnPath).Trim(), out var value) ? value : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
