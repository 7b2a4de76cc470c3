using System.Security.Cryptography;
using System.Text;

namespace Poold.Auth;

/// <summary>PostgreSQL's md5 password scheme, and the plain md5 hex pgpool-II uses in pcp.conf.</summary>
internal static class Md5Password
{
    /// <summary>The stored form: <c>"md5" + hex(md5(password ‖ user))</c>, as in pg_authid and pool_passwd.</summary>
    public static string Hash(string password, string user) => "md5" + Hex(Encoding.UTF8.GetBytes(password + user));

    /// <summary>
    /// The answer to AuthenticationMD5Password: <c>"md5" + hex(md5(hex-part-of-stored-hash ‖ salt))</c>.
    /// </summary>
    public static string SaltedResponse(string storedHash, ReadOnlySpan<byte> salt)
    {
        var inner = Encoding.ASCII.GetBytes(storedHash.AsSpan(3).ToString());
        var input = new byte[inner.Length + salt.Length];
        inner.CopyTo(input, 0);
        salt.CopyTo(input.AsSpan(inner.Length));
        return "md5" + Hex(input);
    }

    /// <summary>Checks a client's md5 response against the stored hash, in constant time.</summary>
    public static bool Verify(string storedHash, ReadOnlySpan<byte> salt, ReadOnlySpan<byte> clientResponse) =>
        CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(SaltedResponse(storedHash, salt)), clientResponse);

    /// <summary>pcp.conf's form: hex md5 of the password alone (<c>pg_md5 PASSWORD</c>).</summary>
    public static string PcpHash(string password) => Hex(Encoding.UTF8.GetBytes(password));

#pragma warning disable CA5351 // MD5 is what PostgreSQL's md5 method and pgpool-II's pcp.conf are defined with.
    private static string Hex(byte[] input) => Convert.ToHexStringLower(MD5.HashData(input));
#pragma warning restore CA5351
}
