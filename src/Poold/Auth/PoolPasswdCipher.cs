using System.Security.Cryptography;
using System.Text;

namespace Poold.Auth;

/// <summary>
/// pgpool-II's AES scheme for <c>pool_passwd</c>, byte for byte: AES-256-CBC with PKCS#7 padding, key and IV from
/// OpenSSL's <c>EVP_BytesToKey(aes-256-cbc, SHA-1, no salt, key string, 1 round)</c>, stored as <c>AES</c> + base64 of
/// the raw ciphertext. Deterministic: the same key and password always give the same entry, as with pgpool's pg_enc.
/// </summary>
internal static class PoolPasswdCipher
{
    public const string Prefix = "AES";

    /// <summary>Longest password pgpool-II can decrypt (its plaintext buffer is 128 bytes with a NUL).</summary>
    public const int MaxPasswordBytes = 127;

    /// <summary>The full entry text: <c>AES</c> + base64.</summary>
    public static string Encrypt(string password, Secret key)
    {
        using var aes = CreateAes(key);
        return Prefix + Convert.ToBase64String(aes.EncryptCbc(Encoding.UTF8.GetBytes(password), aes.IV, PaddingMode.PKCS7));
    }

    /// <summary>Decrypts the base64 part of an <c>AES</c> entry; the error says what failed, never with what.</summary>
    public static bool TryDecrypt(string base64, Secret key, out string password, out string error)
    {
        password = "";
        byte[] cipherText;
        try
        {
            cipherText = Convert.FromBase64String(base64);
        }
        catch (FormatException)
        {
            error = "the AES password is not valid base64";
            return false;
        }

        if (cipherText.Length == 0 || cipherText.Length % 16 != 0)
        {
            error = "the AES password has the wrong length for AES-256-CBC (corrupt entry?)";
            return false;
        }

        using var aes = CreateAes(key);
        byte[] plain;
        try
        {
            plain = aes.DecryptCbc(cipherText, aes.IV, PaddingMode.PKCS7);
        }
        catch (CryptographicException)
        {
            error = "the AES password does not decrypt with this key (wrong key file?)";
            return false;
        }

        if (plain.Length == 0)
        {
            error = "the AES password decrypts to an empty password";
            return false;
        }

        try
        {
            password = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(plain);
        }
        catch (DecoderFallbackException)
        {
            error = "the AES password does not decrypt to valid UTF-8 (wrong key file?)";
            return false;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(plain);
        }

        error = "";
        return true;
    }

    private static Aes CreateAes(Secret key)
    {
        var (aesKey, iv) = BytesToKey(Encoding.UTF8.GetBytes(key.Reveal()));
        var aes = Aes.Create();
        aes.Key = aesKey;
        aes.IV = iv;
        return aes;
    }

    /// <summary>
    /// EVP_BytesToKey with SHA-1, no salt, one round: D1 = SHA1(K), D2 = SHA1(D1 ‖ K), D3 = SHA1(D2 ‖ K);
    /// key = D1 ‖ D2[0..12), IV = D2[12..20) ‖ D3[0..8).
    /// </summary>
    internal static (byte[] Key, byte[] IV) BytesToKey(ReadOnlySpan<byte> keyString)
    {
#pragma warning disable CA5350 // SHA-1 is what pgpool-II's key derivation is defined with.
        var material = new byte[60];
        var input = new byte[20 + keyString.Length];
        SHA1.HashData(keyString, material.AsSpan(0, 20));
        for (var round = 1; round < 3; round++)
        {
            material.AsSpan((round - 1) * 20, 20).CopyTo(input);
            keyString.CopyTo(input.AsSpan(20));
            SHA1.HashData(input, material.AsSpan(round * 20, 20));
        }
#pragma warning restore CA5350

        return (material[..32], material[32..48]);
    }
}
