namespace Poold.Config;

/// <summary>Reads a pgpool.conf-style file and the files it includes into a flat list of entries.</summary>
internal static class ConfFileReader
{
    /// <summary>pgpool-II allows includes ten levels deep.</summary>
    public const int MaxIncludeDepth = 10;

    public static void Read(string path, List<ConfEntry> entries, List<ConfigDiagnostic> diagnostics) =>
        Read(path, path, 0, entries, diagnostics, includedFrom: null);

    private static void Read(string path, string displayName, int depth, List<ConfEntry> entries, List<ConfigDiagnostic> diagnostics,
        ConfEntry? includedFrom)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            var reason = e is FileNotFoundException or DirectoryNotFoundException ? "no such file" : e.Message;
            diagnostics.Add(includedFrom is { } inc
                ? ConfigDiagnostic.Error(inc.File, inc.Line, $"could not read included file \"{path}\": {reason}")
                : ConfigDiagnostic.Error(displayName, 0, $"could not read configuration file: {reason}"));
            return;
        }

        var own = new List<ConfEntry>();
        ConfLexer.Parse(text, displayName, own, diagnostics);
        foreach (var entry in own)
        {
            if (!entry.Name.Equals("include", StringComparison.OrdinalIgnoreCase))
            {
                entries.Add(entry);
                continue;
            }

            if (depth + 1 > MaxIncludeDepth)
            {
                diagnostics.Add(ConfigDiagnostic.Error(entry.File, entry.Line,
                    $"could not include \"{entry.Value}\": includes are nested more than {MaxIncludeDepth} levels deep"));
                continue;
            }

            var target = Path.IsPathRooted(entry.Value)
                ? entry.Value
                : Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path)) ?? ".", entry.Value);
            Read(target, target, depth + 1, entries, diagnostics, entry);
        }
    }
}
