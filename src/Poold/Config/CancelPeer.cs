using System.Globalization;

namespace Poold.Config;

/// <summary>One entry of <c>peers</c>: another Poold behind the same load balancer, and where its clients' cancels go.</summary>
internal sealed record CancelPeer(int Id, string Host, int Port)
{
    /// <summary>Parses <c>id:host:port</c> (an IPv6 host in brackets); null when the entry is not that.</summary>
    public static CancelPeer? TryParse(string text)
    {
        var first = text.IndexOf(':', StringComparison.Ordinal);
        var last = text.LastIndexOf(':');
        if (first <= 0 || last <= first + 1
            || !int.TryParse(text.AsSpan(0, first), NumberStyles.None, CultureInfo.InvariantCulture, out var id) || id is < 1 or > 255
            || !int.TryParse(text.AsSpan(last + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
        {
            return null;
        }

        var host = text[(first + 1)..last].Trim('[', ']');
        return host.Length == 0 ? null : new CancelPeer(id, host, port);
    }
}
