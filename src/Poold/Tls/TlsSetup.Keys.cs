using System.Diagnostics;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Org.BouncyCastle.Crypto;
using Org.BouncyCastle.OpenSsl;
using Org.BouncyCastle.Pkcs;

namespace Poold.Tls;

/// <summary>
/// The server key: plain PEM through .NET; an encrypted one (PKCS#8 <c>ENCRYPTED PRIVATE KEY</c>, or OpenSSL's
/// traditional <c>Proc-Type: 4,ENCRYPTED</c> that .NET cannot read) through BouncyCastle, with the passphrase from
/// <c>ssl_passphrase_command</c>. The passphrase is never logged nor kept.
/// </summary>
internal sealed partial class TlsSetup
{
    private const string PassphrasePrompt = "Enter PEM pass phrase:";
    private static readonly TimeSpan PassphraseTimeout = TimeSpan.FromSeconds(30);

    /// <summary>The certificate at <paramref name="certPath"/> with its private key; throws CryptographicException/IOException on failure.</summary>
    internal static X509Certificate2 LoadServerCertificate(string certPath, string keyPath, string passphraseCommand)
    {
        var keyPem = File.ReadAllText(keyPath);
        if (!keyPem.Contains("ENCRYPTED", StringComparison.Ordinal))
        {
            return X509Certificate2.CreateFromPemFile(certPath, keyPath);
        }

        if (passphraseCommand.Length == 0)
        {
            throw new CryptographicException("the key is encrypted and ssl_passphrase_command is not set");
        }

        var passphrase = RunPassphraseCommand(passphraseCommand);
        byte[] pkcs8;
        try
        {
            using var reader = new StringReader(keyPem);
            var key = new PemReader(reader, new Passphrase(passphrase)).ReadObject() switch
            {
                AsymmetricCipherKeyPair pair => pair.Private,
                AsymmetricKeyParameter { IsPrivate: true } k => k,
                _ => throw new CryptographicException("the file holds no private key"),
            };
            pkcs8 = PrivateKeyInfoFactory.CreatePrivateKeyInfo(key).GetDerEncoded();
        }
        catch (Exception e) when (e is not CryptographicException)
        {
            // BouncyCastle's messages name the cipher or the structure, never the passphrase.
            throw new CryptographicException($"cannot decrypt the key (wrong passphrase?): {e.Message}");
        }
        finally
        {
            Array.Clear(passphrase);
        }

        try
        {
            using var certificate = X509Certificate2.CreateFromPem(File.ReadAllText(certPath));
            switch (certificate.GetKeyAlgorithm())
            {
                case "1.2.840.113549.1.1.1":
                    {
                        using var rsa = RSA.Create();
                        rsa.ImportPkcs8PrivateKey(pkcs8, out _);
                        return certificate.CopyWithPrivateKey(rsa);
                    }
                case "1.2.840.10045.2.1":
                    {
                        using var ec = ECDsa.Create();
                        ec.ImportPkcs8PrivateKey(pkcs8, out _);
                        return certificate.CopyWithPrivateKey(ec);
                    }
                default:
                    throw new CryptographicException($"unsupported key algorithm {certificate.GetKeyAlgorithm()}");
            }
        }
        finally
        {
            CryptographicOperations.ZeroMemory(pkcs8);
        }
    }

    /// <summary>
    /// pgpool-II's ssl_passphrase_command: run by /bin/sh with %p replaced by the prompt (%% is a %); the first line
    /// of its output is the passphrase. A non-zero exit or a timeout is an error.
    /// </summary>
    internal static char[] RunPassphraseCommand(string command)
    {
        var line = command.Replace("%%", "\u0000", StringComparison.Ordinal)
            .Replace("%p", $"'{PassphrasePrompt}'", StringComparison.Ordinal)
            .Replace("\u0000", "%", StringComparison.Ordinal);
        var info = new ProcessStartInfo("/bin/sh")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add(line);
        using var process = Process.Start(info) ?? throw new CryptographicException("ssl_passphrase_command could not be started");
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        _ = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(PassphraseTimeout))
        {
            process.Kill(entireProcessTree: true);
            throw new CryptographicException($"ssl_passphrase_command did not finish within {PassphraseTimeout.TotalSeconds} s");
        }

        if (process.ExitCode != 0)
        {
            throw new CryptographicException($"ssl_passphrase_command exited with code {process.ExitCode}");
        }

        var output = stdout.GetAwaiter().GetResult();
        var end = output.IndexOfAny(['\r', '\n']);
        return (end < 0 ? output : output[..end]).ToCharArray();
    }

    private sealed class Passphrase(char[] passphrase) : IPasswordFinder
    {
        public char[] GetPassword() => (char[])passphrase.Clone();
    }
}
