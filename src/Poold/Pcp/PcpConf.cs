namespace Poold.Pcp;

/// <summary>
/// pcp.conf: <c>username:md5hex</c> lines (the hex md5 of the password alone, as <c>pg_md5 PASSWORD</c> prints it);
/// empty lines and lines starting with <c>#</c> are skipped. Read at every PCP login, as pgpool-II does, so edits
/// need no reload.
/// </summary>
internal static class PcpConf
{
    private const int MaxField = 128;

    /// <summary>The stored hash for <paramref name="user"/>, or null (no file, no such user, malformed entry).</summary>
    public static string? Find(string path, string user)
    {
        if (!File.Exists(path))
        {
            return null;
        }

        foreach (var raw in File.ReadLines(path))
        {
            var line = raw.TrimEnd('\r');
            if (line.Length == 0 || line.StartsWith('#'))
            {
                continue;
            }

            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0 || colon > MaxField || line.Length - colon - 1 > MaxField)
            {
                continue;
            }

            if (line[..colon] == user)
            {
                return line[(colon + 1)..].Trim();
            }
        }

        return null;
    }
}
