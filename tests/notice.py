"""A long public notice for the jobs' tests: the kind of document a city portal has read out.

Made of a dozen paragraphs in the register of a municipal notice (dates, times, phone
numbers, percentages, addresses), numbered as articles and repeated in a varying order until
it is as long as asked.  Deterministic, so every run synthesizes the same text.
"""

from __future__ import annotations

PARAGRAPHS = (
    "为切实做好今年汛期防汛工作，保障人民群众生命财产安全，根据《中华人民共和国防洪法》和本市"
    "防汛应急预案有关规定，现将有关事项通告如下。",
    "自2026年6月1日起至9月30日止，全市进入主汛期。各区、各部门要严格落实二十四小时值班制度，"
    "值班电话保持畅通，遇有险情要在15分钟内报告市防汛指挥部。",
    "沿江路、滨河大道等低洼路段在降雨量超过50毫米时实行临时交通管制，请过往车辆按照现场交警"
    "指挥绕行，不要涉水通过积水路段。",
    "市民朋友如发现道路积水、井盖缺失、树木倒伏等情况，请及时拨打城市服务热线12345反映，"
    "我们将第一时间安排人员到场处置。",
    "各类在建工地要加强基坑、边坡和临时设施的安全检查，塔吊等大型机械在大风天气下一律停止作业，"
    "施工单位负责人必须在岗值守。",
    "学校、医院、养老机构等人员密集场所要制定转移方案，明确转移路线和安置地点，确保老人、儿童"
    "和行动不便人员能够及时安全转移。",
    "请广大市民关注气象部门发布的预警信息。发布暴雨红色预警时，除抢险救灾人员外，其他人员应"
    "尽量留在室内安全地带，暂停户外活动。",
    "各街道社区要在9月30日前完成辖区内排水管网的疏通工作，清理淤泥和杂物，疏通率要达到百分之"
    "百，确保雨水排放顺畅。",
    "市防汛物资仓库储备了编织袋三万条、救生衣两千件、抽水泵一百二十台，各区可按程序申请调用，"
    "调用后要在十日内办理补充手续。",
    "对拒不执行防汛指令、擅自进入管制区域的单位和个人，有关部门将依法予以处理；造成严重后果的，"
    "依法追究相关责任。",
    "防汛抗洪，人人有责。希望广大市民积极配合政府做好各项防汛工作，共同守护我们美丽的家园。",
    "本通告自发布之日起施行，由市防汛抗旱指挥部办公室负责解释。咨询电话：010-87654321，"
    "办公地址：人民路88号市政府大楼三层。",
)


def notice(chars: int) -> str:
    """A notice of about ``chars`` characters (whole paragraphs; at least ``chars``)."""
    out: list[str] = ["关于做好2026年汛期防汛工作的通告。"]
    size = len(out[0])
    article = 1
    while size < chars:
        for i in range(len(PARAGRAPHS)):
            paragraph = PARAGRAPHS[(i * 5 + article) % len(PARAGRAPHS)]
            line = f"第{article}条，{paragraph}"
            out.append(line)
            size += len(line)
            article += 1
            if size >= chars:
                break
    return "\n".join(out)
