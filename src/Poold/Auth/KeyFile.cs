using System.Text;

namespace Poold.Auth;

/// <summary>
/// The AES key file pgpool-II's <c>pg_enc</c> and <c>pgpool</c> read: <c>-k FILE</c>, else <c>$PGPOOLKEYFILE</c>, else
/// <c>~/.pgpoolkey</c>; the key is the first line (at most 255 bytes, as pgpool's 256-byte fgets buffer keeps).
/// Unlike pgpool-II, which only warns, a file readable or writable by group or others is refused.
/// </summary>
internal static class KeyFile
{
    public const string EnvironmentVariable = "PGPOOLKEYFILE";
    public const string DefaultName = ".pgpoolkey";
    private const int MaxKeyBytes = 255;

    /// <summary>Where the key is read from, by pgpool's order.</summary>
    public static string Locate(string? option)
    {
        if (!string.IsNullOrEmpty(option))
        {
            return option;
        }

        var fromEnvironment = Environment.GetEnvironmentVariable(EnvironmentVariable);
        if (!string.IsNullOrEmpty(fromEnvironment))
        {
            return fromEnvironment;
        }

        var home = Environment.GetEnvironmentVariable("HOME") is { Length: > 0 } h
            ? h
            : Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        return Path.Combine(home, DefaultName);
    }

    /// <summary>Reads the key; <see cref="KeyFileException"/> says precisely what is wrong with the file.</summary>
    public static Secret Read(string path)
    {
        FileInfo info;
        try
        {
            info = new FileInfo(path);
            if (!info.Exists)
            {
                throw new KeyFileException($"key file \"{path}\" does not exist (create it with the key on its first line and chmod 600, or name another with -k or {EnvironmentVariable})");
            }

            if (info.Attributes.HasFlag(FileAttributes.Directory))
            {
                throw new KeyFileException($"key file \"{path}\" is not a regular file");
            }

            const UnixFileMode groupOrOther = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute
                                              | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;
            if ((info.UnixFileMode & groupOrOther) != 0)
            {
                throw new KeyFileException($"key file \"{path}\" has group or world access; refusing to use it: run chmod 600 \"{path}\"");
            }

            var bytes = File.ReadAllBytes(path);
            if (bytes.Length == 0)
            {
                throw new KeyFileException($"key file \"{path}\" is empty: the key is its first line");
            }

            var line = bytes.AsSpan();
            var newline = line.IndexOf((byte)'\n');
            if (newline >= 0)
            {
                line = line[..newline];
            }

            if (line.Length > MaxKeyBytes)
            {
                line = line[..MaxKeyBytes];
            }

            return new Secret(Encoding.UTF8.GetString(line));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new KeyFileException($"cannot read key file \"{path}\": {e.Message}");
        }
    }
}

internal sealed class KeyFileException(string message) : Exception(message);
