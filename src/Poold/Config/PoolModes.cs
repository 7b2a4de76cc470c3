namespace Poold.Config;

/// <summary>Which pool mode a database's sessions run in: <c>pool_mode_database_list</c> first, then <c>pool_mode</c>.</summary>
internal static class PoolModes
{
    /// <summary>The mode for <paramref name="database"/>; entries that do not parse were reported when the settings were built.</summary>
    public static PoolMode For(PooldSettings settings, string database)
    {
        foreach (var entry in settings.Get(Params.PoolModeDatabaseList))
        {
            if (TryParse(entry, out var name, out var mode) && string.Equals(name, database, StringComparison.Ordinal))
            {
                return mode;
            }
        }

        return settings.Get(Params.PoolModeParam);
    }

    /// <summary>One <c>database:mode</c> entry.</summary>
    public static bool TryParse(string entry, out string database, out PoolMode mode)
    {
        var colon = entry.LastIndexOf(':');
        database = colon > 0 ? entry[..colon].Trim() : "";
        var word = colon > 0 ? entry[(colon + 1)..].Trim() : "";
        mode = string.Equals(word, "transaction", StringComparison.OrdinalIgnoreCase) ? PoolMode.Transaction : PoolMode.Session;
        return database.Length > 0
               && (string.Equals(word, "transaction", StringComparison.OrdinalIgnoreCase) || string.Equals(word, "session", StringComparison.OrdinalIgnoreCase));
    }
}
