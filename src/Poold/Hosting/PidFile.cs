using System.Globalization;
using System.Text;

namespace Poold.Hosting;

/// <summary>pgpool-II's pid file: the decimal pid followed by a NUL byte, no newline.</summary>
internal static class PidFile
{
    public static int? Read(string path)
    {
        try
        {
            var text = File.ReadAllText(path).TrimEnd('\0', '\n', '\r', ' ');
            return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var pid) ? pid : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Writes our pid; refuses when the file names a live process (another poold or pgpool is running).</summary>
    public static void Write(string path)
    {
        if (Read(path) is { } existing && existing != Environment.ProcessId && IsAlive(existing))
        {
            throw new InvalidOperationException($"pid file \"{path}\" found: is another poold (pid {existing}) running?");
        }

        var dir = Path.GetDirectoryName(path);
        if (!string.IsNullOrEmpty(dir))
        {
            Directory.CreateDirectory(dir);
        }

        File.WriteAllBytes(path, Encoding.ASCII.GetBytes(Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "\0"));
    }

    public static void Delete(string path)
    {
        if (Read(path) == Environment.ProcessId)
        {
            File.Delete(path);
        }
    }

    public static bool IsAlive(int pid) => Directory.Exists($"/proc/{pid}") || NativeMethods.Kill(pid, 0) == 0;
}
