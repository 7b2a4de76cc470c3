using System.Security.Cryptography;
using System.Text;

namespace Poold.Auth;

/// <summary>Comparisons of secrets whose time does not depend on where they differ.</summary>
internal static class FixedTime
{
    /// <summary>Compares the SHA-256 of both strings, so neither length nor content leaks through timing.</summary>
    public static bool Equals(string a, string b) =>
        CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(a)), SHA256.HashData(Encoding.UTF8.GetBytes(b)));
}
