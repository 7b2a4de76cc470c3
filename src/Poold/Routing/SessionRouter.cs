using Poold.Config;

namespace Poold.Routing;

/// <summary>Where one batch may go after the session's state is applied.</summary>
internal enum NodeChoice : byte
{
    Primary,
    Balance,

    /// <summary>Session state or transaction control: wherever the batch goes.</summary>
    Anywhere,
}

/// <summary>
/// A session's routing state and decisions (compat §6.2–6.4): explicit transactions and whether they have written,
/// SERIALIZABLE transactions and sessions, temporary tables, the function rule, and
/// <c>disable_load_balance_on_write</c>. The state follows what is dispatched, so pipelined statements see the effect of
/// the ones before them; ReadyForQuery corrects it.
/// </summary>
internal sealed class SessionRouter(RoutingOptions options, FunctionCatalog catalog, string database)
{
    /// <summary>Made at first use, as <see cref="_writtenObjects"/>: most sessions never need them, and an idle one should cost little.</summary>
    private HashSet<string>? _tempTables;
    private HashSet<string>? _writtenObjects;
    private bool _transactionWrote;
    private bool _transactionSerializable;
    private bool _earlierTransactionWrote;
    private bool _sessionWrote;
    private bool _sessionSerializable;

    /// <summary>read_your_writes: the open transaction changed data (a write, or a call of a function that may write).</summary>
    private bool _transactionChangedData;

    /// <summary>read_your_writes: a change of data became durable with what was dispatched last (see <see cref="TakeDurableWrite"/>).</summary>
    private bool _durableWrite;

    /// <summary>Inside an explicit transaction (as dispatched).</summary>
    public bool InTransaction { get; private set; }

    /// <summary>The session's last explicit transaction wrote: its next one probably will too (BEGIN then goes to the primary).</summary>
    public bool LastTransactionWrote { get; private set; }

    public RoutingOptions Options => options;

    public (NodeChoice Choice, string Reason) Decide(Classification c) => c.Target switch
    {
        RouteTarget.Primary => (NodeChoice.Primary, c.Reason),
        RouteTarget.SessionState or RouteTarget.Transaction => (NodeChoice.Anywhere, c.Reason),
        _ => DecideRead(c),
    };

    private (NodeChoice, string) DecideRead(Classification c)
    {
        if (!options.LoadBalanceMode)
        {
            return (NodeChoice.Primary, "load_balance_mode = off");
        }

        if (_sessionSerializable)
        {
            return (NodeChoice.Primary, "the session's transactions are SERIALIZABLE");
        }

        if (InTransaction)
        {
            if (_transactionSerializable)
            {
                return (NodeChoice.Primary, "SERIALIZABLE transaction");
            }

            switch (options.OnWrite)
            {
                case LoadBalanceOnWrite.Transaction when _transactionWrote:
                    return (NodeChoice.Primary, "the transaction has written (disable_load_balance_on_write = transaction)");
                case LoadBalanceOnWrite.TransTransaction when _transactionWrote || _earlierTransactionWrote:
                    return (NodeChoice.Primary, "a transaction of this session has written (disable_load_balance_on_write = trans_transaction)");
                case LoadBalanceOnWrite.DmlAdaptive when _writtenObjects is { } written && c.Names.Any(written.Contains):
                    return (NodeChoice.Primary, "reads an object the transaction wrote (disable_load_balance_on_write = dml_adaptive)");
            }
        }

        if (options.OnWrite == LoadBalanceOnWrite.Always && _sessionWrote)
        {
            return (NodeChoice.Primary, "the session has written (disable_load_balance_on_write = always)");
        }

        if (options.TempTableCheck != CheckTempTable.None && _tempTables is { } tempTables && c.Names.FirstOrDefault(tempTables.Contains) is { } temp)
        {
            return (NodeChoice.Primary, $"uses temporary table {temp}");
        }

        if (c.Names.FirstOrDefault(IsSystemCatalog) is { } system)
        {
            return (NodeChoice.Primary, $"reads system catalog {system}");
        }

        foreach (var function in c.Functions)
        {
            if (FunctionWrites(function) is { } why)
            {
                return (NodeChoice.Primary, why);
            }
        }

        return (NodeChoice.Balance, c.Reason);
    }

    /// <summary>compat §6.3: the write list, else the read-only list, else volatility from pg_proc (plus standby-unsafe functions).</summary>
    private string? FunctionWrites(string function)
    {
        var bare = function.Contains('.', StringComparison.Ordinal) ? function[(function.LastIndexOf('.') + 1)..] : function;
        if (options.WriteFunctions.Count > 0)
        {
            return options.WriteFunctions.Any(r => r.IsMatch(function))
                ? $"calls {function}, in write_function_list"
                : FunctionCatalog.IsStandbyUnsafe(bare) ? $"calls {function}, which a standby refuses" : null;
        }

        if (options.ReadOnlyFunctions.Count > 0)
        {
            return options.ReadOnlyFunctions.Any(r => r.IsMatch(function)) ? null : $"calls {function}, not in read_only_function_list";
        }

        return catalog.NeedsPrimary(database, function) ? $"calls {function}, which is volatile or refused by a standby" : null;
    }

    private static bool IsSystemCatalog(string name) =>
        name.StartsWith("pg_", StringComparison.Ordinal) || name is "information_schema" or "pg_catalog";

    /// <summary>
    /// Functions created or altered by statements not yet known to have committed: defined again once the session is
    /// idle (see <see cref="ReadyForQuery"/>).
    /// </summary>
    private HashSet<string>? _definedUncommitted;

    /// <summary>Updates the state for a statement that has been sent on its way.</summary>
    public void Dispatched(Classification c)
    {
        foreach (var function in c.DefinesFunctions)
        {
            catalog.Defined(database, function);
            (_definedUncommitted ??= new(StringComparer.Ordinal)).Add(function);
        }

        switch (c.Transaction)
        {
            case TransactionEffect.Begin:
                StartTransaction();
                break;
            case TransactionEffect.Serializable:
                if (!InTransaction)
                {
                    StartTransaction();
                }

                _transactionSerializable = true;
                break;
            case TransactionEffect.End:
                _durableWrite |= _transactionChangedData;
                var (wasOpen, wasSerializable) = (InTransaction, _transactionSerializable);
                EndTransaction();
                if (c.AndChain && wasOpen)
                {
                    // The next transaction begins at once, with the same isolation level. (Outside a transaction block the
                    // server refuses AND CHAIN, 25P01, and the session stays idle.)
                    StartTransaction();
                    _transactionSerializable = wasSerializable;
                }

                return;
        }

        if (options.ReadYourWrites && ChangesData(c))
        {
            if (InTransaction)
            {
                _transactionChangedData = true;
            }
            else
            {
                _durableWrite = true;
            }
        }

        if (c.SessionSerializable is { } serializable)
        {
            _sessionSerializable = serializable;
        }

        if (c.CreatedTempTable is { } temp)
        {
            (_tempTables ??= new(StringComparer.Ordinal)).Add(temp);
        }

        if (c.Writes)
        {
            _sessionWrote = true;
            if (InTransaction)
            {
                _transactionWrote = true;
                if (options.OnWrite != LoadBalanceOnWrite.DmlAdaptive)
                {
                    // What a transaction wrote is only looked at with dml_adaptive.
                    return;
                }

                foreach (var name in c.Names)
                {
                    _writtenObjects ??= new(StringComparer.Ordinal);
                    _writtenObjects.Add(name);
                    if (options.DmlRelationships.TryGetValue(name, out var dependents))
                    {
                        _writtenObjects.UnionWith(dependents);
                    }
                }
            }
        }
    }

    /// <summary>
    /// read_your_writes: whether the statements dispatched since the last call made a change of data durable (an
    /// autocommit write, or the end of a transaction that wrote); resets it. ROLLBACK counts too: harmless, and rare.
    /// </summary>
    public bool TakeDurableWrite()
    {
        var wrote = _durableWrite;
        _durableWrite = false;
        return wrote;
    }

    /// <summary>
    /// A statement that changes data (WAL a standby must replay before it shows the change): a write the classifier
    /// sends to the primary, or a read that calls a function that may write. SET, SAVEPOINT and the like do not count.
    /// </summary>
    private bool ChangesData(Classification c)
    {
        if (c.Target == RouteTarget.Primary)
        {
            return c.Writes && c.SettingKey is null && c.SessionSerializable is null;
        }

        if (c.Target == RouteTarget.LoadBalance)
        {
            // An indexed loop, not Any: no delegate or enumerator per statement.
            for (var i = 0; i < c.Functions.Count; i++)
            {
                if (FunctionWrites(c.Functions[i]) is not null)
                {
                    return true;
                }
            }
        }

        return false;
    }

    /// <summary>
    /// The transaction status the client was given for the newest batch: corrects the dispatched view. Once idle, the
    /// functions defined since are defined again in the catalog: a catalog read that began before their definition
    /// committed (the statement's own, or its transaction's COMMIT) may have seen them as they were, and must not be the
    /// last word.
    /// </summary>
    public void ReadyForQuery(bool inTransaction)
    {
        if (!inTransaction && _definedUncommitted is { } defined)
        {
            _definedUncommitted = null;
            foreach (var function in defined)
            {
                catalog.Defined(database, function);
            }
        }

        if (InTransaction && !inTransaction)
        {
            EndTransaction();
        }
        else if (!InTransaction && inTransaction)
        {
            StartTransaction();
        }
    }

    private void StartTransaction()
    {
        InTransaction = true;
        _transactionChangedData = false;
        _transactionWrote = false;
        _transactionSerializable = false;
        _writtenObjects?.Clear();
    }

    private void EndTransaction()
    {
        if (InTransaction)
        {
            LastTransactionWrote = _transactionWrote;
        }

        if (_transactionWrote)
        {
            _earlierTransactionWrote = true;
        }

        InTransaction = false;
        _transactionWrote = false;
        _transactionChangedData = false;
        _transactionSerializable = false;
        _writtenObjects?.Clear();
    }
}
