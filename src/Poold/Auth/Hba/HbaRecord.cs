using System.Net;
using System.Net.Sockets;

namespace Poold.Auth.Hba;

/// <summary>How a client reached Poold, as pool_hba.conf's first column sees it.</summary>
internal enum HbaConnectionType
{
    Local,
    Host,
    HostSsl,
    HostNoSsl,
}

/// <summary>The authentication methods of pool_hba.conf that Poold implements.</summary>
internal enum HbaMethod
{
    Trust,
    Reject,
    Password,
    Md5,
    ScramSha256,
    Cert,
}

/// <summary>The client facts a record is matched against.</summary>
/// <param name="IsPhysicalReplication">A physical replication connection (<c>replication=true</c>): as in pg_hba.conf, only the
/// <c>replication</c> keyword matches it, not <c>all</c> nor a database name.</param>
internal readonly record struct HbaRequest(bool IsLocal, bool IsSsl, IPAddress? Address, string User, string Database, bool IsPhysicalReplication = false);

/// <summary>One line of pool_hba.conf.</summary>
internal sealed class HbaRecord
{
    public required HbaConnectionType Type { get; init; }

    /// <summary>Names, or the keywords <c>all</c> and <c>sameuser</c> (unquoted); @file lists already expanded.</summary>
    public required IReadOnlyList<HbaName> Databases { get; init; }

    public required IReadOnlyList<HbaName> Users { get; init; }

    public HbaAddress? Address { get; init; }

    public required HbaMethod Method { get; init; }

    public required string File { get; init; }

    public required int Line { get; init; }

    public string Where => $"{File}:{Line}";

    public bool Matches(in HbaRequest request, bool sslEnabled)
    {
        var typeMatches = Type switch
        {
            HbaConnectionType.Local => request.IsLocal,
            HbaConnectionType.Host => !request.IsLocal,
            HbaConnectionType.HostSsl => !request.IsLocal && request.IsSsl && sslEnabled,
            _ => !request.IsLocal && !request.IsSsl,
        };
        if (!typeMatches)
        {
            return false;
        }

        if (Type != HbaConnectionType.Local && (request.Address is null || Address is null || !Address.Matches(request.Address)))
        {
            return false;
        }

        var (user, database) = (request.User, request.Database);
        var databaseMatches = request.IsPhysicalReplication
            ? Databases.Any(d => d is { IsKeyword: true, Name: "replication" })
            : Databases.Any(d => d.Matches(database, user, isDatabase: true));
        return databaseMatches && Users.Any(u => u.Matches(user, user, isDatabase: false));
    }
}

/// <summary>
/// An entry of a database or user list: a keyword (<c>all</c>, <c>sameuser</c>, <c>replication</c>) or a literal name.
/// <c>replication</c> matches physical replication connections only (see <see cref="HbaRecord.Matches"/>).
/// </summary>
internal readonly record struct HbaName(string Name, bool IsKeyword)
{
    public bool Matches(string value, string user, bool isDatabase) => IsKeyword
        ? Name switch
        {
            "all" => true,
            "sameuser" when isDatabase => value == user,
            _ => false,
        }
        : Name == value;
}

/// <summary>The address column: <c>all</c>, an address with a prefix length or mask, or a host name.</summary>
internal sealed class HbaAddress
{
    private readonly IPAddress? _network;
    private readonly byte[]? _mask;
    private readonly bool _all;
    private readonly string? _hostName;
    private readonly IReadOnlyList<HbaAddress>? _anyOf;

    private HbaAddress(IPAddress? network, byte[]? mask, bool all, string? hostName, IReadOnlyList<HbaAddress>? anyOf = null)
    {
        _network = network;
        _mask = mask;
        _all = all;
        _hostName = hostName;
        _anyOf = anyOf;
    }

    public static HbaAddress All { get; } = new(null, null, true, null);

    public static HbaAddress Network(IPAddress network, byte[] mask) => new(network, mask, false, null);

    public static HbaAddress Host(string name) => new(null, null, false, name);

    /// <summary>Matches when any of <paramref name="addresses"/> does (samehost, samenet).</summary>
    public static HbaAddress AnyOf(IReadOnlyList<HbaAddress> addresses) => new(null, null, false, null, addresses);

    /// <summary>Matching needs DNS lookups (a host name, not an address).</summary>
    public bool IsHostName => _hostName is not null;

    public bool Matches(IPAddress client)
    {
        if (_all)
        {
            return true;
        }

        if (_hostName is not null)
        {
            return MatchesHostName(client);
        }

        if (_anyOf is not null)
        {
            return _anyOf.Any(a => a.Matches(client));
        }

        if (client.IsIPv4MappedToIPv6 && _network!.AddressFamily == AddressFamily.InterNetwork)
        {
            client = client.MapToIPv4();
        }

        if (client.AddressFamily != _network!.AddressFamily)
        {
            return false;
        }

        var bytes = client.GetAddressBytes();
        var network = _network.GetAddressBytes();
        for (var i = 0; i < bytes.Length; i++)
        {
            if ((bytes[i] & _mask![i]) != (network[i] & _mask[i]))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>As PostgreSQL: reverse lookup of the client, then a forward lookup must confirm it; a leading dot matches a suffix.</summary>
    private bool MatchesHostName(IPAddress client)
    {
        try
        {
            var reverse = Dns.GetHostEntry(client).HostName;
            var matches = _hostName!.StartsWith('.')
                ? reverse.EndsWith(_hostName, StringComparison.OrdinalIgnoreCase)
                : reverse.Equals(_hostName, StringComparison.OrdinalIgnoreCase);
            return matches && Dns.GetHostAddresses(reverse).Any(a => a.Equals(client) || (client.IsIPv4MappedToIPv6 && a.Equals(client.MapToIPv4())));
        }
        catch (SocketException)
        {
            return false;
        }
    }

    public override string ToString() => _all ? "all" : _hostName ?? (_anyOf is not null ? "samehost/samenet" : $"{_network}/{string.Join('.', _mask!)}");
}
