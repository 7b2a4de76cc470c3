using System.Collections.Concurrent;
using System.Collections.Frozen;
using Poold.Pooling;

namespace Poold.Routing;

/// <summary>
/// Which function names are volatile, per database, read from the primary's <c>pg_proc</c> (compat §6.3: a name is
/// volatile when any overload is, as pgpool-II's name-only lookup decides). Loaded once per database and shared by
/// every session; a session that meets a name the catalog did not have marks it stale, and the next session to start
/// in that database reloads it.
/// </summary>
internal sealed class FunctionCatalog
{
    private const string Query =
        "SELECT p.proname, bool_or(p.provolatile = 'v') FROM pg_catalog.pg_proc p GROUP BY p.proname";

    /// <summary>STABLE functions PostgreSQL refuses during recovery: pgpool-II balances them and they fail; Poold sends them to the primary.</summary>
    private static readonly FrozenSet<string> PrimaryOnly = new[]
    {
        "txid_current", "txid_current_if_assigned", "pg_current_xact_id", "pg_current_xact_id_if_assigned", "pg_current_wal_lsn",
        "pg_current_wal_insert_lsn", "pg_current_wal_flush_lsn", "pg_current_xlog_location", "pg_current_xlog_insert_location",
        "pg_current_xlog_flush_location",
    }.ToFrozenSet(StringComparer.Ordinal);

    private readonly ConcurrentDictionary<string, Entry> _byDatabase = new(StringComparer.Ordinal);

    /// <summary>
    /// Per database, the functions created or altered through Poold that a load may not have seen, with their
    /// definition's number (<see cref="Defined"/>): calling them needs the primary. Never replaced, only pruned by a load.
    /// </summary>
    private readonly ConcurrentDictionary<string, ConcurrentDictionary<string, long>> _definedByDatabase = new(StringComparer.Ordinal);

    /// <summary>Counts the definitions seen, to tell those a load began after.</summary>
    private long _definitions;

    private sealed class Entry(FrozenDictionary<string, bool> volatility)
    {
        public FrozenDictionary<string, bool> Volatility { get; } = volatility;

        public volatile bool Stale;
    }

    /// <summary>A STABLE function a standby refuses (pgpool-II balances them; Poold does not).</summary>
    public static bool IsStandbyUnsafe(string bareName) => PrimaryOnly.Contains(bareName);

    /// <summary>True when the database's catalog must be (re)loaded before routing on function volatility.</summary>
    public bool NeedsLoad(string database) => !_byDatabase.TryGetValue(database, out var entry) || entry.Stale;

    /// <summary>Loads the database's function names through an idle connection to the primary.</summary>
    public async Task LoadAsync(string database, BackendConnection primary, CancellationToken cancellationToken)
    {
        var startedAfter = Interlocked.Read(ref _definitions);
        var rows = await primary.QueryRowsAsync(Query, cancellationToken);
        var map = new Dictionary<string, bool>(StringComparer.Ordinal);
        foreach (var row in rows)
        {
            if (row is [{ } name, var isVolatile])
            {
                map[name] = isVolatile == "t";
            }
        }

        var entry = new Entry(map.ToFrozenDictionary(StringComparer.Ordinal));
        _byDatabase[database] = entry;

        // A definition the load has seen is known now. One it may not have seen still needs the primary: made after the
        // load began (the catalog stays stale, to be read again), or not in the catalog (rolled back, or not committed
        // yet: the session that made it defines it again once it is idle, see SessionRouter.ReadyForQuery).
        if (_definedByDatabase.TryGetValue(database, out var defined))
        {
            foreach (var definition in defined)
            {
                if (definition.Value > startedAfter)
                {
                    entry.Stale = true;
                }
                else if (map.ContainsKey(definition.Key))
                {
                    defined.TryRemove(definition);
                }
            }
        }
    }

    /// <summary>
    /// A session sent CREATE [OR REPLACE] or ALTER of function <paramref name="name"/> (bare, folded) to the primary: until
    /// the catalog is read again (by the next session to start in the database), calling it needs the primary, whatever
    /// the catalog said of the name. A standby may not even have it yet.
    /// </summary>
    public void Defined(string database, string name)
    {
        var defined = _definedByDatabase.GetOrAdd(database, static _ => new ConcurrentDictionary<string, long>(StringComparer.Ordinal));
        defined[name] = Interlocked.Increment(ref _definitions);
        if (_byDatabase.TryGetValue(database, out var entry))
        {
            entry.Stale = true;
        }
    }

    /// <summary>
    /// Whether calling <paramref name="function"/> (as written, perhaps schema-qualified) needs the primary: volatile,
    /// or one of the STABLE functions a standby refuses. A name the catalog lacks is taken as not volatile (as in
    /// pgpool-II) and marks the catalog stale.
    /// </summary>
    public bool NeedsPrimary(string database, string function)
    {
        var dot = function.LastIndexOf('.');
        var name = dot >= 0 ? function[(dot + 1)..] : function;
        if (PrimaryOnly.Contains(name))
        {
            return true;
        }

        if (!_byDatabase.TryGetValue(database, out var entry))
        {
            return true;
        }

        if (_definedByDatabase.TryGetValue(database, out var defined) && defined.ContainsKey(name))
        {
            return true;
        }

        if (entry.Volatility.TryGetValue(name, out var isVolatile))
        {
            return isVolatile;
        }

        entry.Stale = true;
        return false;
    }
}
