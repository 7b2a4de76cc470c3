using System.Security.Cryptography;
using System.Text;

namespace Poold.Auth;

/// <summary>The SCRAM-SHA-256 functions of RFC 5802 §3 with SHA-256 (RFC 7677).</summary>
internal static class ScramSha256
{
    public const string Mechanism = "SCRAM-SHA-256";
    public const string MechanismPlus = "SCRAM-SHA-256-PLUS";

    /// <summary>SaltedPassword := Hi(Normalize(password), salt, i), Hi being PBKDF2 with HMAC-SHA-256.</summary>
    public static byte[] SaltedPassword(ReadOnlySpan<byte> preparedPassword, ReadOnlySpan<byte> salt, int iterations) =>
        Rfc2898DeriveBytes.Pbkdf2(preparedPassword, salt, iterations, HashAlgorithmName.SHA256, 32);

    public static byte[] Hmac(ReadOnlySpan<byte> key, ReadOnlySpan<byte> data) => HMACSHA256.HashData(key, data);

    public static byte[] ClientKey(ReadOnlySpan<byte> saltedPassword) => Hmac(saltedPassword, "Client Key"u8);

    public static byte[] ServerKey(ReadOnlySpan<byte> saltedPassword) => Hmac(saltedPassword, "Server Key"u8);

    public static byte[] StoredKey(ReadOnlySpan<byte> clientKey) => SHA256.HashData(clientKey);

    public static byte[] Xor(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        var result = new byte[a.Length];
        for (var i = 0; i < a.Length; i++)
        {
            result[i] = (byte)(a[i] ^ b[i]);
        }

        return result;
    }

    public static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);
}
