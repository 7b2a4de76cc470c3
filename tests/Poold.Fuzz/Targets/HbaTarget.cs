using System.Net;
using System.Text;
using Poold.Auth.Hba;
using Poold.Config;

namespace Poold.Fuzz.Targets;

/// <summary>
/// pool_hba.conf text through <see cref="HbaFile.Parse"/>, then matched against a local, an IPv4 and an IPv6 client
/// (not when a record names a host: that would wait for DNS). The file sits in a directory that does not exist, so
/// a relative <c>@file</c> fails to open; inputs that name an absolute <c>@/file</c> are skipped (they would read this
/// machine's files, /dev/zero included). Errors are a <see cref="ConfigException"/>.
/// </summary>
internal static class HbaTarget
{
    private static readonly HbaRequest[] Requests =
    [
        new(IsLocal: true, IsSsl: false, Address: null, User: "alice", Database: "alice"),
        new(IsLocal: false, IsSsl: true, Address: IPAddress.Parse("192.168.1.20"), User: "bob", Database: "postgres"),
        new(IsLocal: false, IsSsl: false, Address: IPAddress.Parse("::ffff:10.0.0.1"), User: "all", Database: "sameuser"),
        new(IsLocal: false, IsSsl: false, Address: IPAddress.Parse("fe80::1"), User: "carol", Database: "db"),
    ];

    public static void Run(ReadOnlySpan<byte> input)
    {
        var text = Encoding.UTF8.GetString(input);
        if (text.Contains("@/", StringComparison.Ordinal) || text.Contains("@\"/", StringComparison.Ordinal))
        {
            return;
        }

        HbaFile file;
        try
        {
            file = HbaFile.Parse(text, "/nonexistent/poold-fuzz/pool_hba.conf");
        }
        catch (ConfigException)
        {
            return;
        }

        if (file.UsesHostNames)
        {
            return;
        }

        foreach (var request in Requests)
        {
            _ = file.Match(request, sslEnabled: true)?.Where;
            _ = file.Match(request, sslEnabled: false);
        }
    }
}
