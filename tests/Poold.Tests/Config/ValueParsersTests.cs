using Poold.Config;

namespace Poold.Tests.Config;

public class ValueParsersTests
{
    [TestCase("on", true)]
    [TestCase("OFF", false)]
    [TestCase("true", true)]
    [TestCase("t", true)]
    [TestCase("TRUE", true)]
    [TestCase("fal", false)]
    [TestCase("yes", true)]
    [TestCase("y", true)]
    [TestCase("no", false)]
    [TestCase("n", false)]
    [TestCase("1", true)]
    [TestCase("0", false)]
    [TestCase("Off", false)]
    public void Bool_PostgresSpellings_AreAccepted(string text, bool expected)
    {
        Assert.That(ValueParsers.Bool(text, out var value), Is.Null);
        Assert.That(value, Is.EqualTo(expected));
    }

    [TestCase("o", TestName = "Bool_AmbiguousO_IsRejected")]
    [TestCase("maybe", TestName = "Bool_Maybe_IsRejected")]
    [TestCase("2", TestName = "Bool_Two_IsRejected")]
    [TestCase("", TestName = "Bool_Empty_IsRejected")]
    [TestCase("onn", TestName = "Bool_LongerThanWord_IsRejected")]
    public void Bool_Invalid_IsRejected(string text) => Assert.That(ValueParsers.Bool(text, out _), Is.Not.Null);

    [TestCase("60", UnitKind.Seconds, 60)]
    [TestCase("5min", UnitKind.Seconds, 300)]
    [TestCase("90s", UnitKind.Seconds, 90)]
    [TestCase("2h", UnitKind.Seconds, 7200)]
    [TestCase("1d", UnitKind.Seconds, 86400)]
    [TestCase("1500ms", UnitKind.Seconds, 2)]
    [TestCase("2500ms", UnitKind.Seconds, 2)]
    [TestCase("1s", UnitKind.Milliseconds, 1000)]
    [TestCase("10000", UnitKind.Milliseconds, 10000)]
    [TestCase("10 s", UnitKind.Milliseconds, 10000)]
    [TestCase("10MB", UnitKind.Bytes, 10 * 1024 * 1024)]
    [TestCase("1kB", UnitKind.Bytes, 1024)]
    [TestCase("0x10", UnitKind.None, 16)]
    [TestCase("0777", UnitKind.None, 511)]
    [TestCase("+7", UnitKind.None, 7)]
    public void Integer_WithUnits_ConvertsToBaseUnit(string text, object unit, long expected)
    {
        Assert.That(ValueParsers.Integer(text, (UnitKind)unit, 0, long.MaxValue, out var value), Is.Null);
        Assert.That(value, Is.EqualTo(expected));
    }

    [TestCase("39999x", UnitKind.None, "takes no unit", TestName = "Integer_TrailingJunk_IsRejected")]
    [TestCase("3.5", UnitKind.None, "is not an integer", TestName = "Integer_Fraction_IsRejected")]
    [TestCase("10KB", UnitKind.Bytes, "valid units are B, kB, MB, GB, TB", TestName = "Integer_WrongCaseMemoryUnit_ListsValidUnits")]
    [TestCase("5mins", UnitKind.Seconds, "invalid unit \"mins\"", TestName = "Integer_UnknownTimeUnit_IsRejected")]
    [TestCase("5MB", UnitKind.Seconds, "valid units are us, ms, s, min, h, d", TestName = "Integer_MemoryUnitOnTime_IsRejected")]
    [TestCase("abc", UnitKind.None, "not an integer", TestName = "Integer_Word_IsRejected")]
    [TestCase("-1", UnitKind.None, "outside the valid range 0..", TestName = "Integer_BelowMinimum_IsRejected")]
    [TestCase("99999999999999999999999", UnitKind.None, "out of range", TestName = "Integer_Overflow_IsRejected")]
    public void Integer_Invalid_SaysWhy(string text, object unit, string reason) =>
        Assert.That(ValueParsers.Integer(text, (UnitKind)unit, 0, int.MaxValue, out _), Does.Contain(reason));

    [Test]
    public void List_SplitsTrimsAndDropsEmptyItems() =>
        Assert.That(ValueParsers.List(" ABORT; DISCARD ALL ;;", ';'), Is.EqualTo(new[] { "ABORT", "DISCARD ALL" }));
}
