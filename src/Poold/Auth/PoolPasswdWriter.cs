using System.Text;

namespace Poold.Auth;

/// <summary>
/// Adds or replaces one user's line in pool_passwd, as <c>pg_enc -m</c> does, but atomically: the new contents go to a
/// temporary file in the same folder, with the old file's permissions (0600 for a new file), which then replaces it.
/// Other lines, their order and any line pgpool would ignore are kept byte for byte.
/// </summary>
internal static class PoolPasswdWriter
{
    public static void Upsert(string path, string user, string stored)
    {
        var line = PoolPasswd.EscapeUser(user) + ":" + stored;
        var lines = File.Exists(path) ? File.ReadAllText(path, Encoding.UTF8).Split('\n').ToList() : [];
        if (lines.Count > 0 && lines[^1].Length == 0)
        {
            lines.RemoveAt(lines.Count - 1);
        }

        var replaced = false;
        for (var i = 0; i < lines.Count; i++)
        {
            if (PoolPasswd.TrySplit(lines[i].TrimEnd('\r'), out var existing, out _) && existing == user)
            {
                lines[i] = line;
                replaced = true;
                break;
            }
        }

        if (!replaced)
        {
            lines.Add(line);
        }

        var directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        var mode = File.Exists(path) ? File.GetUnixFileMode(path) : UnixFileMode.UserRead | UnixFileMode.UserWrite;
        var temp = Path.Combine(directory, $".{Path.GetFileName(path)}.{Environment.ProcessId}.tmp");
        try
        {
            using (var stream = new FileStream(temp, new FileStreamOptions
            {
                Mode = FileMode.CreateNew,
                Access = FileAccess.Write,
                UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
            }))
            {
                var bytes = Encoding.UTF8.GetBytes(string.Join('\n', lines) + "\n");
                stream.Write(bytes);
                stream.Flush(flushToDisk: true);
            }

            File.SetUnixFileMode(temp, mode);
            File.Move(temp, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp))
            {
                File.Delete(temp);
            }
        }
    }
}
