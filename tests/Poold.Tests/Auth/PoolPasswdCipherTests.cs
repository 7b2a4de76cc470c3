using System.Text;
using FsCheck;
using FsCheck.Fluent;
using Poold.Auth;

namespace Poold.Tests.Auth;

/// <summary>pgpool-II's AES scheme against the vectors made by its own pg_enc (compat Appendix A).</summary>
public class PoolPasswdCipherTests
{
    [TestCase("mysecretkey", "secret", "AESYRai7zmB0fWbn5w5oqTKDw==")]
    [TestCase("mysecretkey", "exactly16bytes!!", "AES52cDq9DGrEY04K0sNC+moHtHyxljV1m/7mjZ0l/7CIc=")]
    [TestCase("Pgpool-Key 2024!", "pässwörd-ü", "AESUFv3kLCGwxHr/EKX1kXQHg==")]
    [TestCase("Pgpool-Key 2024!", "", "AES71ofvvGhzLHcAuf5BgVJ2A==")]
    [TestCase("poold-test-key", "alicepw", "AESUyO8FLpQQGsczFhnzs1dHQ==")]
    [TestCase("poold-test-key", "pgpoolpw", "AESakMwDJb2X3h1lC9IYGaF+Q==")]
    [TestCase("poold-test-key", "Gr@ce pw:ü!", "AESZq8s84yGalcB3aOtuvVFhA==")]
    [TestCase("mysecretkey", "pw1", "AES6TnDrssSKvO95252ilRL0Q==")]
    [TestCase("mysecretkey", "pw:with:colons", "AESvO7TonqsdjP04WECua9xng==")]
    [TestCase("k3y\r", "secret", "AEShDBobTbpO2sw8b3DhxLOGw==")]
    [TestCase("k3y", "secret", "AESmP/ZtaU4H21V8oJHP64QYQ==")]
    [TestCase("", "secret", "AESusUl+sJB8NTGklVZKnG09g==")]
    [TestCase("first line key", "secret", "AES54AnmB4VDRd/lKvJfcVW9Q==")]
    public void Encrypt_MatchesPgEnc(string key, string password, string expected)
    {
        Assert.That(PoolPasswdCipher.Encrypt(password, new Secret(key)), Is.EqualTo(expected));
    }

    [TestCase("mysecretkey", "17f8341226dbfd4f2ef424c64a475f1bb2e7c9b09c34303e0334d26a4e71292d", "5b519a6381743b1333a469c4b96463fb")]
    [TestCase("poold-test-key", "38742b146e0b173354bad46748b3f802a74f2c03074835a474d25d562fe66ce5", "61dc15257a23e1590ce5b32109d43af3")]
    [TestCase("Pgpool-Key 2024!", "39a5e984024f28bbcb873333d3129c9fd2b3f7685191f6f9f5765b02c0e44481", "8f23f77b665903f28a508107ab2745e6")]
    public void BytesToKey_MatchesOpenSsl(string key, string aesKey, string iv)
    {
        var (k, i) = PoolPasswdCipher.BytesToKey(Encoding.UTF8.GetBytes(key));
        Assert.That((Convert.ToHexStringLower(k), Convert.ToHexStringLower(i)), Is.EqualTo((aesKey, iv)));
    }

    [TestCase("mysecretkey", "YRai7zmB0fWbn5w5oqTKDw==", "secret")]
    [TestCase("Pgpool-Key 2024!", "UFv3kLCGwxHr/EKX1kXQHg==", "pässwörd-ü")]
    public void TryDecrypt_ReadsPgEncEntries(string key, string base64, string expected)
    {
        Assert.That(PoolPasswdCipher.TryDecrypt(base64, new Secret(key), out var password, out var error), Is.True, error);
        Assert.That(password, Is.EqualTo(expected));
    }

    [TestCase("YRai7zmB0fWbn5w5oqTKDw==", "wrongkey", "does not decrypt with this key")]
    [TestCase("not base64!!", "mysecretkey", "not valid base64")]
    [TestCase("YRai7zmB0fWbn5w5", "mysecretkey", "wrong length")]
    [TestCase("71ofvvGhzLHcAuf5BgVJ2A==", "Pgpool-Key 2024!", "empty password")]
    public void TryDecrypt_BadInput_SaysWhatIsWrong(string base64, string key, string message)
    {
        Assert.That(PoolPasswdCipher.TryDecrypt(base64, new Secret(key), out _, out var error), Is.False);
        Assert.That(error, Does.Contain(message));
    }

    [Test]
    public void EncryptThenDecrypt_RoundTripsAnyPassword()
    {
        Prop.ForAll<NonEmptyString, string>((password, key) =>
        {
            var entry = PoolPasswdCipher.Encrypt(password.Get, new Secret(key ?? ""));
            return PoolPasswdCipher.TryDecrypt(entry[3..], new Secret(key ?? ""), out var back, out _) && back == password.Get
                   || !IsValidUtf16(password.Get);
        }).QuickCheckThrowOnFailure();
    }

    private static bool IsValidUtf16(string s) => !s.Any(char.IsSurrogate) || s.Normalize() is not null && Encoding.UTF8.GetString(Encoding.UTF8.GetBytes(s)) == s;
}
