using System.Text;
using Poold.Auth;

namespace Poold.Fuzz.Targets;

/// <summary>
/// pool_passwd text through <see cref="PoolPasswd.Parse"/>, then every user's entry resolved as a login does it (md5
/// hash, SCRAM verifier, AES password decrypted with a fixed key, or text). An unusable entry throws
/// <see cref="PoolPasswdException"/>.
/// </summary>
internal static class PoolPasswdTarget
{
    private static readonly Secret Key = new("fuzz-key");

    public static void Run(ReadOnlySpan<byte> input)
    {
        var text = Encoding.UTF8.GetString(input);
        var passwd = PoolPasswd.Parse(text, "pool_passwd");
        foreach (var rawLine in text.Split('\n'))
        {
            if (!PoolPasswd.TrySplit(rawLine.TrimEnd('\r'), out var user, out _))
            {
                continue;
            }

            var entry = passwd.Find(user) ?? throw new FuzzInvariantException($"user \"{user}\" was split but not stored");
            try
            {
                var credential = entry.Resolve(Key);
                _ = credential.Md5For(user);
            }
            catch (PoolPasswdException)
            {
            }
        }
    }
}
