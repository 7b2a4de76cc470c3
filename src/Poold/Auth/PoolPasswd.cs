using System.Collections.Frozen;
using System.Text;

namespace Poold.Auth;

/// <summary>How a <c>pool_passwd</c> entry stores its password, decided by prefix in pgpool-II's order.</summary>
internal enum PoolPasswdKind
{
    /// <summary><c>md5</c> + 32 hex digits: PostgreSQL's md5(password ‖ user).</summary>
    Md5,

    /// <summary><c>AES</c> + base64, decrypted with the key file.</summary>
    Aes,

    /// <summary><c>SCRAM-SHA-256$…</c>: a verifier, for frontend SCRAM only.</summary>
    Scram,

    /// <summary><c>TEXT</c> + password, or any other text (the legacy plain form).</summary>
    Text,
}

/// <summary>One user's line in <c>pool_passwd</c>, with where it came from.</summary>
internal sealed class PoolPasswdEntry
{
    private readonly string _stored;

    public PoolPasswdEntry(string user, string stored, string file, int line)
    {
        User = user;
        _stored = stored;
        File = file;
        Line = line;
        Kind = stored switch
        {
            { Length: 35 } when stored.StartsWith("md5", StringComparison.Ordinal) => PoolPasswdKind.Md5,
            _ when stored.StartsWith(PoolPasswdCipher.Prefix, StringComparison.Ordinal) => PoolPasswdKind.Aes,
            _ when stored.StartsWith("SCRAM-SHA-256$", StringComparison.Ordinal) => PoolPasswdKind.Scram,
            _ => PoolPasswdKind.Text,
        };
    }

    public string User { get; }

    public PoolPasswdKind Kind { get; }

    public string File { get; }

    public int Line { get; }

    public override string ToString() => $"{File}:{Line} ({Kind} entry for \"{User}\")";

    /// <summary>
    /// What the entry can prove and log in with. An AES entry needs <paramref name="key"/>; a failure gives a message
    /// that names the file, the line and the cause (never the password or the key).
    /// </summary>
    public StoredCredential Resolve(Secret? key)
    {
        switch (Kind)
        {
            case PoolPasswdKind.Md5:
                return StoredCredential.FromMd5Hash(_stored);
            case PoolPasswdKind.Scram:
                return ScramVerifier.TryParse(_stored, out var verifier)
                    ? StoredCredential.FromScramVerifier(verifier)
                    : throw new PoolPasswdException($"{File}:{Line}: the SCRAM-SHA-256 verifier of user \"{User}\" is malformed");
            case PoolPasswdKind.Aes:
                if (key is null)
                {
                    throw new PoolPasswdException($"{File}:{Line}: user \"{User}\" has an AES password but Poold has no key to decrypt it (give the key file with -k, {KeyFile.EnvironmentVariable} or ~/{KeyFile.DefaultName})");
                }

                return PoolPasswdCipher.TryDecrypt(_stored[PoolPasswdCipher.Prefix.Length..], key, out var password, out var error)
                    ? StoredCredential.FromPassword(new Secret(password))
                    : throw new PoolPasswdException($"{File}:{Line}: cannot use the password of user \"{User}\": {error}");
            default:
                return StoredCredential.FromPassword(new Secret(_stored.StartsWith("TEXT", StringComparison.Ordinal) ? _stored[4..] : _stored));
        }
    }
}

/// <summary>A bad or unusable pool_passwd entry; the message names the file and line.</summary>
internal sealed class PoolPasswdException(string message) : Exception(message);

/// <summary>
/// The contents of <c>pool_passwd</c>: <c>user:password</c> per line, read as pgpool-II reads it — the user ends at the
/// first unescaped <c>:</c> (<c>\:</c> and <c>\\</c> escape), anything after a second <c>:</c> is ignored, the first
/// line for a user wins, there are no comments; a SCRAM verifier takes the rest of the line. Unlike pgpool-II, a trailing <c>\r</c> (a file saved with CRLF) is
/// dropped rather than made part of the password.
/// </summary>
internal sealed class PoolPasswd
{
    public static readonly PoolPasswd Empty = new(null, FrozenDictionary<string, PoolPasswdEntry>.Empty);

    private readonly FrozenDictionary<string, PoolPasswdEntry> _entries;

    private PoolPasswd(string? path, FrozenDictionary<string, PoolPasswdEntry> entries)
    {
        Path = path;
        _entries = entries;
    }

    /// <summary>The file read; null when <c>pool_passwd = ''</c> disables it.</summary>
    public string? Path { get; }

    public int Count => _entries.Count;

    public bool HasAesEntries => _entries.Values.Any(e => e.Kind == PoolPasswdKind.Aes);

    public PoolPasswdEntry? Find(string user) => _entries.GetValueOrDefault(user);

    /// <summary>Reads the file; a missing file is an empty one (pgpool-II starts without it too).</summary>
    public static PoolPasswd Load(string? path)
    {
        if (string.IsNullOrEmpty(path))
        {
            return Empty;
        }

        if (!System.IO.File.Exists(path))
        {
            return new PoolPasswd(path, FrozenDictionary<string, PoolPasswdEntry>.Empty);
        }

        string text;
        try
        {
            text = System.IO.File.ReadAllText(path, Encoding.UTF8);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new PoolPasswdException($"cannot read pool_passwd file \"{path}\": {e.Message}");
        }

        return Parse(text, path);
    }

    public static PoolPasswd Parse(string text, string path)
    {
        var entries = new Dictionary<string, PoolPasswdEntry>(StringComparer.Ordinal);
        var lineNumber = 0;
        foreach (var rawLine in text.Split('\n'))
        {
            lineNumber++;
            var line = rawLine.EndsWith('\r') ? rawLine[..^1] : rawLine;
            if (line.Length == 0 || !TrySplit(line, out var user, out var password))
            {
                continue;
            }

            entries.TryAdd(user, new PoolPasswdEntry(user, password, path, lineNumber));
        }

        return new PoolPasswd(path, entries.ToFrozenDictionary(StringComparer.Ordinal));
    }

    /// <summary>Splits <c>user:password[:ignored]</c>, unescaping <c>\:</c> and <c>\\</c> in the user name.</summary>
    public static bool TrySplit(string line, out string user, out string password)
    {
        var name = new StringBuilder();
        var i = 0;
        for (; i < line.Length; i++)
        {
            var c = line[i];
            if (c == '\\' && i + 1 < line.Length && line[i + 1] is ':' or '\\')
            {
                name.Append(line[++i]);
            }
            else if (c == ':')
            {
                break;
            }
            else
            {
                name.Append(c);
            }
        }

        user = name.ToString();
        if (i >= line.Length || user.Length == 0)
        {
            password = "";
            return false;
        }

        var rest = line[(i + 1)..];
        if (rest.StartsWith("SCRAM-SHA-256$", StringComparison.Ordinal))
        {
            // A verifier has colons of its own (iterations:salt, StoredKey:ServerKey).
            password = rest;
            return true;
        }

        var end = rest.IndexOf(':', StringComparison.Ordinal);
        password = end >= 0 ? rest[..end] : rest;
        return true;
    }

    /// <summary>Escapes a user name for writing: <c>:</c> and <c>\</c> get a backslash.</summary>
    public static string EscapeUser(string user) => user.Replace("\\", "\\\\", StringComparison.Ordinal).Replace(":", "\\:", StringComparison.Ordinal);
}
